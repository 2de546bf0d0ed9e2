/* Progress reports through libmariadb (MARIADB_CLIENT_PROGRESS), for tests/compat.rs: a copying
 * ALTER TABLE of a 2-million-row temporary table with progress_report_time = 1 reports its
 * progress about once a second. Prints the number of reports and how the ALTER ended.
 * Usage: progress HOST PORT USER PASSWORD DB */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned reports = 0;

static void on_progress(const MYSQL *m, unsigned stage, unsigned max_stage, double progress, const char *info,
                        unsigned info_len) {
  (void)m; (void)stage; (void)max_stage; (void)progress; (void)info; (void)info_len;
  reports++;
}

static int run(MYSQL *m, const char *sql) {
  if (mysql_query(m, sql)) {
    printf("error %u %s on: %s\n", mysql_errno(m), mysql_error(m), sql);
    return 1;
  }
  do {
    MYSQL_RES *res = mysql_store_result(m);
    if (res) mysql_free_result(res);
  } while (mysql_next_result(m) == 0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s HOST PORT USER PASSWORD DB\n", argv[0]);
    return 2;
  }
  MYSQL *m = mysql_init(NULL);
  unsigned timeout = 60;
  mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
  mysql_optionsv(m, MYSQL_PROGRESS_CALLBACK, on_progress);
  my_bool no = 0;
  mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &no);
  if (!mysql_real_connect(m, argv[1], argv[3], argv[4], argv[5], (unsigned)atoi(argv[2]), NULL, 0)) {
    fprintf(stderr, "connect failed: %u %s\n", mysql_errno(m), mysql_error(m));
    return 2;
  }
  if (run(m, "SET SESSION progress_report_time = 1") ||
      run(m, "CREATE TEMPORARY TABLE big ENGINE=InnoDB SELECT seq FROM seq_1_to_2000000"))
    return 1;
  reports = 0;
  int failed = run(m, "ALTER TABLE big ADD COLUMN x INT DEFAULT 1, ALGORITHM=COPY");
  printf("reports=%u alter=%s\n", reports, failed ? "failed" : "ok");
  mysql_close(m);
  return 0;
}
