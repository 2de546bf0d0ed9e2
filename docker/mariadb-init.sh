#!/bin/sh
# Sets up one MariaDB server of the compose stack: $ROLE is primary or replica; $SERVER_ID unique.
# Used both by the official mariadb images (as an entrypoint wrapper) and the locally built base.
set -eu
datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
fi
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
ro=OFF; [ "$ROLE" = replica ] && ro=ON
mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --server-id="$SERVER_ID" \
  --log-bin=mysql-bin --log-slave-updates=ON --binlog-format=ROW --gtid-strict-mode=ON \
  --read-only="$ro" --skip-name-resolve &
pid=$!
i=0
until mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 60 ] && { echo "mariadbd did not start" >&2; exit 1; }; sleep 1
done
if [ "$ROLE" = primary ]; then
  mariadb -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS app;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
GRANT ALL ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'monitor';
GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor'@'%';
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
SQL
else
  # Replicas copy everything (users included) from the primary through GTID replication.
  i=0
  until mariadb -hprimary -urepl -prepl -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt 120 ] && { echo "primary unreachable" >&2; exit 1; }; sleep 1
  done
  mariadb -uroot -e "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='primary', MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
fi
wait $pid
