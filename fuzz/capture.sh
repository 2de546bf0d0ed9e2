#!/usr/bin/env bash
# Refreshes the seed corpus (fuzz/corpus/) from real clients talking to the real primary of
# scripts/cluster.sh through fuzz/capture.py: the mysql CLI, PyMySQL, libmariadb (the C client of
# tests/clients/c) and Go's driver (tests/clients/go). Needs a running cluster (scripts/cluster.sh up,
# same RWSPLIT_CLUSTER_* variables) and the packages scripts/test.sh installs.
#   fuzz/capture.sh            adds new captures (at most 40 per target)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/cluster.sh env)"
primary=${RWSPLIT_PRIMARY_PORT:?"no cluster: run scripts/cluster.sh up"}
relay=$((primary + 50))
work=$(mktemp -d)
python3 fuzz/capture.py "$relay" "$primary" &
relay_pid=$!
trap 'kill "$relay_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$relay) 2>/dev/null && break; sleep 0.1; done

db=fuzzcap
mysql --protocol=tcp -h127.0.0.1 -P"$primary" -uapp -papp --skip-ssl -e "CREATE DATABASE IF NOT EXISTS $db" 2>/dev/null ||
  mysql --protocol=tcp -h127.0.0.1 -P"$primary" -uapp -papp -e "CREATE DATABASE IF NOT EXISTS $db"
cli=(mysql --protocol=tcp -h127.0.0.1 -P"$relay" -uapp -papp --skip-ssl)
"${cli[@]}" "$db" --auto-rehash -e "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARCHAR(20), b BLOB);
  REPLACE INTO t VALUES (1,'a',NULL),(2,'b','x'); SELECT * FROM t WHERE id IN (1,2) ORDER BY id;
  SELECT 1 FOR UPDATE; BEGIN; UPDATE t SET v='c' WHERE id=2; COMMIT; SHOW TABLES; SET @a := 1; SELECT @a;
  /* comment */ SELECT 'it''s', \"dq\", \`id\` FROM t LIMIT 1; EXPLAIN SELECT * FROM t; DO SLEEP(0);
  WITH c AS (SELECT 1 x) SELECT x FROM c; SELECT JSON_OBJECT('k', 1); XA START 'x'; XA END 'x'; XA ROLLBACK 'x';
  LOCK TABLES t READ; UNLOCK TABLES; SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SHOW WARNINGS;
  SELECT * FROM t INTO @x, @y, @z; SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1; SELECT FOUND_ROWS();
  SELECT NOW(), UUID(), RAND(); SELECT a.id FROM t a JOIN t b USING (id) WHERE a.v LIKE 'a%' GROUP BY a.id HAVING COUNT(*) > 0;
  INSERT INTO t VALUES (3,'d',NULL) ON DUPLICATE KEY UPDATE v=VALUES(v); DELETE FROM t WHERE id=3;" >/dev/null || true
# The interactive client sends COM_INIT_DB and COM_FIELD_LIST (auto-rehash) when it switches database.
printf 'use %s\nstatus\n' "$db" | "${cli[@]}" --auto-rehash >/dev/null 2>&1 || true

/usr/bin/python3 tests/clients/python/client.py --port "$relay" --db "$db" --primary-port "$primary" >/dev/null 2>&1 || true
/usr/bin/python3 - "$relay" "$db" <<'PY' || true
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app", autocommit=True)
c.select_db(sys.argv[2])
cur = c.cursor()
cur.execute("SELECT %s, %s", (1, "x'y"))
cur.execute("SELECT * FROM t WHERE v = %s", ("a",))
c.ping()
c.close()
PY

if command -v mariadb_config >/dev/null; then
  # shellcheck disable=SC2046
  cc -O1 -o "$work/compat-c" tests/clients/c/compat.c $(mariadb_config --cflags --libs) &&
    "$work/compat-c" 127.0.0.1 "$relay" app app "$db" >/dev/null 2>&1 || true
  # shellcheck disable=SC2046
  cc -O1 -o "$work/longdata" fuzz/longdata.c $(mariadb_config --cflags --libs) &&
    "$work/longdata" 127.0.0.1 "$relay" app app "$db" || true
fi
go=$(command -v go || echo /usr/lib/go/bin/go)
if [[ -x $go ]]; then
  (cd tests/clients/go && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS=-mod=mod GOCACHE="$work/gocache" \
    "$go" build -o "$work/goclient" . && "$work/goclient" -port "$relay" -db "$db" -primary-port "$primary") >/dev/null 2>&1 || true
fi
sleep 0.5
for d in fuzz/corpus/*/; do printf '%-16s %s\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
