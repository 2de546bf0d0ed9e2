#!/bin/bash
# MySQL 8.4 counterpart of mariadb-init.sh: $ROLE primary|replica, $SERVER_ID unique.
set -euo pipefail
datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
  mysqld --initialize-insecure --user=mysql --datadir="$datadir"
fi
ro=OFF; [ "$ROLE" = replica ] && ro=ON
mysqld --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --server-id="$SERVER_ID" \
  --gtid-mode=ON --enforce-gtid-consistency=ON --log-bin=mysql-bin --super-read-only="$ro" \
  --skip-name-resolve &
pid=$!
for _ in $(seq 60); do mysql -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
if [ "$ROLE" = primary ]; then
  mysql -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS app;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'app';
GRANT ALL ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'monitor';
GRANT REPLICATION CLIENT ON *.* TO 'monitor'@'%';
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
SQL
else
  for _ in $(seq 120); do mysql -hprimary -urepl -prepl -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
  mysql -uroot -e "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_HOST='primary', SOURCE_USER='repl', SOURCE_PASSWORD='repl', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1; START REPLICA;"
fi
wait $pid
