/* Differential compatibility client for tests/compat.rs, on Debian's libmariadb (libmariadb-dev).
 * Runs one fixed script of statements and protocol commands and prints, one fact per line, what
 * the client library sees: results, column metadata, status flags, warning counts, errors.
 * Lines are prefixed with the step name so the harness can allow-list differences per step.
 * Usage: compat HOST PORT USER PASSWORD DB */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *step = "start";

static void say_status(MYSQL *m) {
  printf("%s: status=%u warnings=%u affected=%lld insert_id=%llu\n", step, m->server_status,
         mysql_warning_count(m), (long long)mysql_affected_rows(m), (unsigned long long)mysql_insert_id(m));
}

static void say_fields(MYSQL_FIELD *f, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    printf("%s: col name=%s org=%s table=%s type=%d charset=%u length=%lu decimals=%u flags=%u\n", step,
           f[i].name, f[i].org_name, f[i].org_table, (int)f[i].type, f[i].charsetnr, f[i].length, f[i].decimals,
           f[i].flags);
}

static void say_error(MYSQL *m) { printf("%s: error %u %s %s\n", step, mysql_errno(m), mysql_sqlstate(m), mysql_error(m)); }

/* Text protocol: runs sql and prints every result of it (multi-results included). */
static void text(MYSQL *m, const char *name, const char *sql) {
  step = name;
  if (mysql_query(m, sql)) {
    say_error(m);
    return;
  }
  do {
    MYSQL_RES *res = mysql_store_result(m);
    if (res) {
      unsigned n = mysql_num_fields(res);
      say_fields(mysql_fetch_fields(res), n);
      MYSQL_ROW row;
      while ((row = mysql_fetch_row(res))) {
        printf("%s: row", step);
        for (unsigned i = 0; i < n; i++) printf(" [%s]", row[i] ? row[i] : "NULL");
        printf("\n");
      }
      mysql_free_result(res);
    } else if (mysql_field_count(m)) {
      say_error(m);
    }
    say_status(m);
  } while (mysql_next_result(m) == 0);
  if (mysql_errno(m)) say_error(m);
}

/* Binary protocol: prepares sql, binds one int parameter (when it has one), prints every result. */
static void binary(MYSQL *m, const char *name, const char *sql, int param) {
  step = name;
  MYSQL_STMT *st = mysql_stmt_init(m);
  if (mysql_stmt_prepare(st, sql, strlen(sql))) {
    printf("%s: prepare error %u %s %s\n", step, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
    mysql_stmt_close(st);
    return;
  }
  printf("%s: params=%lu fields=%u\n", step, mysql_stmt_param_count(st), mysql_stmt_field_count(st));
  MYSQL_BIND pb[2];
  memset(pb, 0, sizeof pb);
  int p = param;
  for (unsigned i = 0; i < mysql_stmt_param_count(st) && i < 2; i++) {
    pb[i].buffer_type = MYSQL_TYPE_LONG;
    pb[i].buffer = &p;
  }
  if (mysql_stmt_param_count(st)) mysql_stmt_bind_param(st, pb);
  if (mysql_stmt_execute(st)) {
    printf("%s: execute error %u %s %s\n", step, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
    mysql_stmt_close(st);
    return;
  }
  do {
    unsigned n = mysql_stmt_field_count(st);
    if (n) {
      MYSQL_RES *meta = mysql_stmt_result_metadata(st);
      say_fields(mysql_fetch_fields(meta), n);
      mysql_free_result(meta);
      char buf[16][256];
      unsigned long len[16];
      my_bool nul[16];
      MYSQL_BIND rb[16];
      memset(rb, 0, sizeof rb);
      for (unsigned i = 0; i < n && i < 16; i++) {
        rb[i].buffer_type = MYSQL_TYPE_STRING;
        rb[i].buffer = buf[i];
        rb[i].buffer_length = sizeof buf[i];
        rb[i].length = &len[i];
        rb[i].is_null = &nul[i];
      }
      mysql_stmt_bind_result(st, rb);
      int rc;
      while ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
        printf("%s: row", step);
        for (unsigned i = 0; i < n && i < 16; i++) printf(" [%.*s]", nul[i] ? 4 : (int)len[i], nul[i] ? "NULL" : buf[i]);
        printf("\n");
      }
      if (rc == 1) printf("%s: fetch error %u %s\n", step, mysql_stmt_errno(st), mysql_stmt_error(st));
    }
    printf("%s: out_params=%d\n", step, (m->server_status & SERVER_PS_OUT_PARAMS) != 0);
    say_status(m);
  } while (mysql_stmt_next_result(st) == 0);
  if (mysql_stmt_errno(st)) printf("%s: next error %u %s\n", step, mysql_stmt_errno(st), mysql_stmt_error(st));
  mysql_stmt_close(st);
}

/* Bulk execute (MariaDB COM_STMT_BULK_EXECUTE via STMT_ATTR_ARRAY_SIZE): three rows at once. */
static void bulk(MYSQL *m) {
  step = "bulk_insert";
  const char *sql = "INSERT INTO b (v) VALUES (?)";
  MYSQL_STMT *st = mysql_stmt_init(m);
  if (mysql_stmt_prepare(st, sql, strlen(sql))) {
    printf("%s: prepare error %u %s\n", step, mysql_stmt_errno(st), mysql_stmt_error(st));
    mysql_stmt_close(st);
    return;
  }
  int vals[3] = {10, 20, 30};
  unsigned int size = 3;
  MYSQL_BIND pb;
  memset(&pb, 0, sizeof pb);
  pb.buffer_type = MYSQL_TYPE_LONG;
  pb.buffer = vals;
  mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size);
  mysql_stmt_bind_param(st, &pb);
  if (mysql_stmt_execute(st))
    printf("%s: execute error %u %s\n", step, mysql_stmt_errno(st), mysql_stmt_error(st));
  else
    printf("%s: affected=%lld\n", step, (long long)mysql_stmt_affected_rows(st));
  mysql_stmt_close(st);
}

static MYSQL *open_conn(const char *host, unsigned port, const char *user, const char *pw, const char *db) {
  MYSQL *m = mysql_init(NULL);
  unsigned timeout = 10;
  mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
  mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  my_bool no = 0;
  mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &no);
  if (!mysql_real_connect(m, host, user, pw, db, port, NULL, CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS)) {
    fprintf(stderr, "connect to %s:%u failed: %u %s\n", host, port, mysql_errno(m), mysql_error(m));
    exit(2);
  }
  return m;
}

/* After the server (or the proxy) closed an idle session: what the next statement sees. A lost
 * connection is 2006 or 2013 depending on timing (whether the write already failed); both print
 * as "lost". */
static void after_idle(MYSQL *m, const char *name) {
  step = name;
  if (mysql_query(m, "SELECT 1") == 0) {
    mysql_free_result(mysql_store_result(m));
    printf("%s: ok\n", step);
  } else if (mysql_errno(m) == 2006 || mysql_errno(m) == 2013) {
    printf("%s: lost\n", step);
  } else {
    say_error(m);
  }
}

/* A new connection, so one section's failure cannot leave the next out of sync. */
static MYSQL *reopen(MYSQL *m, const char *host, unsigned port, const char *user, const char *pw, const char *db) {
  mysql_close(m);
  return open_conn(host, port, user, pw, db);
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: %s HOST PORT USER PASSWORD DB [SQL]\n", argv[0]);
    return 2;
  }
  const char *host = argv[1], *user = argv[3], *pw = argv[4], *db = argv[5];
  unsigned port = (unsigned)atoi(argv[2]);
  MYSQL *m = open_conn(host, port, user, pw, db);
  if (argc == 7) {
    /* One statement: what libmariadb reports for it (for errors the proxy itself sends). */
    text(m, "one", argv[6]);
    mysql_close(m);
    return 0;
  }
  step = "connect";
  printf("%s: charset=%s\n", step, mysql_character_set_name(m));
  say_status(m);

  text(m, "setup", "DROP TABLE IF EXISTS t, b; DROP PROCEDURE IF EXISTS p");
  text(m, "create_t",
       "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(20) CHARACTER SET utf8mb4, j JSON, "
       "d DECIMAL(10,3), ts DATETIME(3))");
  text(m, "create_b", "CREATE TABLE b (id INT PRIMARY KEY AUTO_INCREMENT, v INT)");
  text(m, "insert_emoji",
       "INSERT INTO t (s, j, d, ts) VALUES ('caf\xc3\xa9 \xf0\x9f\x98\x80', '{\"a\": [1, 2]}', 1.5, "
       "'2024-01-02 03:04:05.678'), (NULL, NULL, NULL, NULL)");
  text(m, "select_text", "SELECT * FROM t ORDER BY id");
  binary(m, "select_binary", "SELECT * FROM t WHERE id = ?", 1);
  text(m, "literals", "SELECT 1 AS i, 'x' AS s, NULL AS n, 1.50 AS d, 2e0 AS f, _latin1'l' AS l");
  text(m, "multi_results", "SELECT 1 AS a; SELECT 'two' AS b; DO 0");
  text(m, "warnings", "SELECT 1/0 AS z");
  text(m, "show_warnings", "SHOW WARNINGS");
  text(m, "user_var", "SET @a = 1");
  text(m, "temporary", "CREATE TEMPORARY TABLE tmp1 (x INT)");
  text(m, "charset", "SELECT @@character_set_client, @@character_set_connection, @@character_set_results, "
                     "@@collation_connection");
  text(m, "create_proc", "CREATE PROCEDURE p(IN a INT, OUT b INT) BEGIN SELECT a AS echoed; SET b = a * 2; END");
  binary(m, "call_out", "CALL p(?, ?)", 21);
  m = reopen(m, host, port, user, pw, db);
  text(m, "call_text", "CALL p(4, @o); SELECT @o AS o");
  m = reopen(m, host, port, user, pw, db);
  bulk(m);
  text(m, "bulk_check", "SELECT v FROM b ORDER BY v");
  m = reopen(m, host, port, user, pw, db);
  text(m, "autocommit_off", "SET autocommit = 0");
  text(m, "in_txn", "INSERT INTO b (v) VALUES (99)");
  text(m, "rollback", "ROLLBACK");
  text(m, "autocommit_on", "SET autocommit = 1");
  /* Same connection as the writes: read-your-writes holds per session, not across them. */
  /* Another session wrote the row: the hint keeps the read off a replica that may lag (harmless directly). */
  text(m, "json_type", "/* rwsplit:primary */ SELECT j, JSON_TYPE(j) AS jt FROM t WHERE id = 1");

  m = reopen(m, host, port, user, pw, db);
  step = "change_user";
  if (mysql_change_user(m, user, pw, db))
    say_error(m);
  else
    say_status(m);
  text(m, "after_change_user", "SELECT CURRENT_USER() AS u, DATABASE() IS NOT NULL AS has_db, @a AS a_gone");

  m = reopen(m, host, port, user, pw, db);
  step = "change_user_bad";
  if (mysql_change_user(m, user, "wrong-password", db)) printf("%s: error %u %s\n", step, mysql_errno(m), mysql_sqlstate(m));
  step = "ping_after_bad";
  printf("%s: ping=%d\n", step, mysql_ping(m) == 0);
  text(m, "user_after_bad", "SELECT CURRENT_USER() AS u");
  mysql_close(m);

  m = open_conn(host, port, user, pw, db);
  step = "refresh";
  if (mysql_refresh(m, REFRESH_STATUS)) printf("%s: error %u %s\n", step, mysql_errno(m), mysql_sqlstate(m));
  else printf("%s: ok\n", step);
  step = "debug";
  if (mysql_dump_debug_info(m)) printf("%s: error %u %s\n", step, mysql_errno(m), mysql_sqlstate(m));
  else printf("%s: ok\n", step);

  /* KILL of another connection of the same client, with a leading comment. */
  MYSQL *victim = open_conn(host, port, user, pw, db);
  char sql[128];
  snprintf(sql, sizeof sql, "/* c */ KILL %lu", mysql_thread_id(victim));
  step = "kill_commented";
  printf("%s: %s\n", step, mysql_query(m, sql) ? "error" : "ok");
  if (mysql_errno(m)) printf("%s: errno %u\n", step, mysql_errno(m));
  step = "victim_after_kill";
  int victim_ok = mysql_query(victim, "SELECT 1") == 0;
  if (victim_ok) mysql_free_result(mysql_store_result(victim));
  printf("%s: alive=%d\n", step, victim_ok);
  mysql_close(victim);

  /* KILL first in a multi-statement: translated, then the rest runs. */
  victim = open_conn(host, port, user, pw, db);
  snprintf(sql, sizeof sql, "KILL %lu; SELECT 1 AS one", mysql_thread_id(victim));
  text(m, "kill_multi", sql);
  step = "victim_after_kill_multi";
  victim_ok = mysql_query(victim, "SELECT 1") == 0;
  if (victim_ok) mysql_free_result(mysql_store_result(victim));
  printf("%s: alive=%d\n", step, victim_ok);
  mysql_close(victim);

  /* KILL QUERY of an idle connection: OK, the connection lives on. */
  victim = open_conn(host, port, user, pw, db);
  snprintf(sql, sizeof sql, "KILL QUERY %lu", mysql_thread_id(victim));
  text(m, "kill_query", sql);
  step = "victim_after_kill_query";
  victim_ok = mysql_query(victim, "SELECT 1") == 0;
  if (victim_ok) mysql_free_result(mysql_store_result(victim));
  printf("%s: alive=%d\n", step, victim_ok);
  mysql_close(victim);

  /* KILL after another statement: the proxy refuses rather than send an untranslated id. */
  victim = open_conn(host, port, user, pw, db);
  snprintf(sql, sizeof sql, "SELECT 1 AS one; KILL %lu", mysql_thread_id(victim));
  text(m, "kill_after_select", sql);
  step = "victim_after_kill_after_select";
  victim_ok = mysql_query(victim, "SELECT 1") == 0;
  if (victim_ok) mysql_free_result(mysql_store_result(victim));
  printf("%s: alive=%d\n", step, victim_ok);
  mysql_close(victim);
  mysql_close(m);

  /* Timeouts the client sets: the session is closed after that much idle time, as directly. */
  m = open_conn(host, port, user, pw, db);
  text(m, "wait_timeout_set", "SET SESSION wait_timeout = 1");
  sleep(2);
  after_idle(m, "wait_timeout");
  mysql_close(m);
  m = open_conn(host, port, user, pw, db);
  text(m, "idle_txn_set", "SET SESSION idle_transaction_timeout = 1");
  text(m, "idle_txn_begin", "BEGIN");
  text(m, "idle_txn_update", "UPDATE t SET d = d WHERE id = 1");
  sleep(2);
  after_idle(m, "idle_txn");
  mysql_close(m);
  printf("done\n");
  return 0;
}
