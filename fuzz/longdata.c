/* Capture helper for fuzz/capture.sh: a libmariadb session that sends COM_STMT_SEND_LONG_DATA, then
 * executes statements with and without bound types (parameter kinds: int, string, blob, NULL, double).
 * Usage: longdata HOST PORT USER PASSWORD DB */
#include <mysql.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 6) return 2;
  MYSQL *m = mysql_init(NULL);
  if (!mysql_real_connect(m, argv[1], argv[3], argv[4], argv[5], (unsigned)atoi(argv[2]), NULL, 0)) return 1;
  MYSQL_STMT *s = mysql_stmt_init(m);
  const char *sql = "SELECT ?, ?, ?, ?, ?";
  if (mysql_stmt_prepare(s, sql, strlen(sql))) return 1;
  long long i = -42;
  double d = 3.25;
  char str[] = "héllo", blob[] = "\x00\x01\xff";
  unsigned long str_len = strlen(str), blob_len = 3;
  my_bool is_null = 1;
  MYSQL_BIND b[5];
  memset(b, 0, sizeof b);
  b[0].buffer_type = MYSQL_TYPE_LONGLONG, b[0].buffer = &i;
  b[1].buffer_type = MYSQL_TYPE_STRING, b[1].buffer = str, b[1].length = &str_len;
  b[2].buffer_type = MYSQL_TYPE_BLOB, b[2].buffer = blob, b[2].length = &blob_len;
  b[3].buffer_type = MYSQL_TYPE_NULL, b[3].is_null = &is_null;
  b[4].buffer_type = MYSQL_TYPE_DOUBLE, b[4].buffer = &d;
  mysql_stmt_bind_param(s, b);
  mysql_stmt_send_long_data(s, 2, "long-", 5);
  mysql_stmt_send_long_data(s, 2, "data", 4);
  mysql_stmt_execute(s);
  mysql_stmt_store_result(s);
  mysql_stmt_free_result(s);
  i = 7;
  mysql_stmt_execute(s); /* types already sent: no new-params-bound flag */
  mysql_stmt_store_result(s);
  mysql_stmt_reset(s);
  mysql_stmt_close(s);
  mysql_close(m);
  return 0;
}
