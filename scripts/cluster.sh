#!/usr/bin/env bash
# A throwaway MariaDB cluster for rwsplit's tests and demo: one primary and two GTID replicas, all on 127.0.0.1.
#
#   scripts/cluster.sh up              start whatever is not running, wire replication, wait until replicas are in sync
#   scripts/cluster.sh down [--purge]  stop the servers this script started; --purge also deletes the cluster dir
#   scripts/cluster.sh status          table of name, port, pid, role, state, lag, source, GTID; exit 1 if a node is down
#   scripts/cluster.sh env             KEY=value lines: `set -a; eval "$(scripts/cluster.sh env)"; set +a`
#   scripts/cluster.sh failover        kill -9 the primary, promote the most advanced replica, repoint the other one
#
# Environment:
#   RWSPLIT_CLUSTER_DIR        datadirs, sockets, pid files, logs, state   (default ${TMPDIR:-/tmp}/rwsplit-cluster)
#   RWSPLIT_CLUSTER_PORT_BASE  node1 listens on BASE, node2 on BASE+1, node3 on BASE+2   (default 13306)
#   RWSPLIT_CLUSTER_TIMEOUT    seconds to wait for a start, a stop or replication      (default 60)
#   RWSPLIT_CERT_DIR           TLS material made by scripts/certs.sh and given to every node  (default certs/ at the
#                              repo root, where config/demo.toml expects it); nodes started before it existed run
#                              without TLS until they are restarted (`down` then `up`)
#
# Nodes are named node1..node3 and keep their port and server id for life; roles move. The primary is recorded in
# "$RWSPLIT_CLUSTER_DIR/state", so after `failover` the commands keep working: `env` and `status` report the new
# primary, and `up` restarts the old primary as a replica of the new one. Because a killed primary may hold
# transactions that never reached a replica, its datadir is rebuilt from the empty template on the next `up`
# and it replays the full history from the new primary (every node keeps its complete binlog, so this works).
# `down --purge` followed by `up` gives back the original layout: node1 primary on BASE.
#
# Accounts (created on the primary, replicated to the replicas):
#   app/app          ALL PRIVILEGES WITH GRANT OPTION minus READ_ONLY ADMIN, so its writes on a replica fail with 1290
#   monitor/monitor  PROCESS, BINLOG MONITOR, SLAVE MONITOR, REPLICATION MASTER ADMIN: SHOW SLAVE STATUS/HOSTS, @@vars
#   repl/repl        REPLICATION SLAVE
#   root             no password, used by this script over each node's unix socket only
#
# The system MariaDB service is never touched: every server here runs with --no-defaults, its own datadir,
# socket and pid file under the cluster dir, and is stopped only by the pid in its own pid file.
set -euo pipefail

readonly CLUSTER_DIR="${RWSPLIT_CLUSTER_DIR:-${TMPDIR:-/tmp}/rwsplit-cluster}"
readonly PORT_BASE="${RWSPLIT_CLUSTER_PORT_BASE:-13306}"
readonly TIMEOUT="${RWSPLIT_CLUSTER_TIMEOUT:-60}"
readonly NODES=(node1 node2 node3)
readonly STATE_FILE="$CLUSTER_DIR/state"
readonly TEMPLATE_DIR="$CLUSTER_DIR/template"
# Created on first use; `down --purge` refuses to delete a directory without it.
readonly OWNER_MARK="$CLUSTER_DIR/.rwsplit-cluster"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly CERT_DIR="${RWSPLIT_CERT_DIR:-$SCRIPT_DIR/../certs}"

# Filled by find_binaries.
MARIADBD=""
INSTALL_DB=""
CLIENT=""

# Current roles, filled by load_state: the primary's name and the nodes to rebuild from the template on `up`.
PRIMARY=""
REBUILD=()

# Last SHOW SLAVE STATUS of one node, filled by read_slave_status.
declare -A SS=()
# Size of each node's error log when it was launched, so wait_ready only reads what this start wrote.
declare -A LOG_OFFSET=()

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- node layout -------------------------------------------------------------------------------------------------

node_num() { printf '%s' "${1#node}"; }
node_port() { printf '%s' "$((PORT_BASE + $(node_num "$1") - 1))"; }
node_dir() { printf '%s' "$CLUSTER_DIR/$1"; }
node_datadir() { printf '%s' "$CLUSTER_DIR/$1/data"; }
node_socket() { printf '%s' "$CLUSTER_DIR/$1/mysqld.sock"; }
node_pidfile() { printf '%s' "$CLUSTER_DIR/$1/mysqld.pid"; }
node_errlog() { printf '%s' "$CLUSTER_DIR/$1/error.log"; }

# A node starts with server id = its number. A rebuilt node takes a new id (+3, so ids never collide across
# nodes): a replica skips binlog events carrying its own server id, so a rebuilt node1 keeping id 1 would
# silently drop everything the old node1 wrote when it replays the history.
node_server_id() {
  local file="$CLUSTER_DIR/$1/server_id"
  if [[ -s $file ]]; then cat "$file"; else node_num "$1"; fi
}

# Prints the pid of the node's mariadbd if it is alive. The pid must also be a process started with this node's
# datadir, so a stale pid file whose pid the kernel reused never makes us signal someone else's process.
node_pid() {
  local pidfile pid
  pidfile=$(node_pidfile "$1")
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "--datadir=$(node_datadir "$1")"; then
    printf '%s' "$pid"
  fi
}

is_running() { [[ -n $(node_pid "$1") ]]; }

# The non-primary nodes, in ring order after the primary: with node2 primary they are node3, node1. This keeps
# REPLICA1 the live one after a failover (the killed old primary becomes REPLICA2).
replicas_of() {
  local start i
  start=$(node_num "$1")
  for i in 1 2; do
    printf 'node%s\n' "$(((start - 1 + i) % ${#NODES[@]} + 1))"
  done
}

# --- state file --------------------------------------------------------------------------------------------------

load_state() {
  PRIMARY=node1
  REBUILD=()
  [[ -f $STATE_FILE ]] || return 0
  local key value
  while IFS='=' read -r key value; do
    case $key in
      primary) PRIMARY=$value ;;
      rebuild) read -r -a REBUILD <<<"$value" ;;
    esac
  done <"$STATE_FILE"
  [[ $PRIMARY =~ ^node[1-3]$ ]] || die "corrupt $STATE_FILE (primary=$PRIMARY)"
}

save_state() {
  printf 'primary=%s\nrebuild=%s\n' "$PRIMARY" "${REBUILD[*]}" >"$STATE_FILE.tmp"
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

needs_rebuild() {
  local n
  for n in "${REBUILD[@]}"; do [[ $n == "$1" ]] && return 0; done
  return 1
}

drop_rebuild() {
  local n kept=()
  for n in "${REBUILD[@]}"; do [[ $n == "$1" ]] || kept+=("$n"); done
  REBUILD=("${kept[@]}")
}

# --- MariaDB binaries --------------------------------------------------------------------------------------------

first_found() {
  local c
  for c in "$@"; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

find_binaries() {
  MARIADBD=$(first_found mariadbd /usr/sbin/mariadbd mysqld /usr/sbin/mysqld) || return 1
  INSTALL_DB=$(first_found mariadb-install-db mysql_install_db) || return 1
  CLIENT=$(first_found mariadb mysql) || return 1
}

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

is_apt_busy() {
  local name
  # pgrep matches at most 15 characters of a process name, so one name per call.
  for name in apt apt-get dpkg unattended-upgr; do
    pgrep -x "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}

# Installs MariaDB with apt when missing. Someone else may be installing it right now, so first give a running
# apt/dpkg the chance to finish rather than fighting over the dpkg lock.
ensure_mariadb() {
  find_binaries && return 0
  local waited=0
  while is_apt_busy && ((waited < 900)); do
    ((waited % 30 == 0)) && log "waiting for a running apt/dpkg to finish (mariadb not installed yet)"
    sleep 2
    waited=$((waited + 2))
    find_binaries && return 0
  done
  log "installing mariadb-server and mariadb-client with apt-get"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 \
    mariadb-server mariadb-client
  find_binaries || die "mariadb installed but mariadbd, mariadb-install-db or mariadb not found"
}

# mariadbd refuses to run as root unless told so; as any other user it simply runs as that user.
user_args() {
  if [[ $EUID -eq 0 ]]; then printf '%s\n' --user=root; fi
}

# --- SQL helpers ---------------------------------------------------------------------------------------------------

# Runs SQL as root over the node's socket; tab-separated rows, no headers.
sql() {
  "$CLIENT" --no-defaults --protocol=socket -S "$(node_socket "$1")" -uroot --connect-timeout=5 -N -B -e "$2"
}

# Fills SS with the node's SHOW SLAVE STATUS (empty if the node is not a replica or cannot be reached).
read_slave_status() {
  local out line
  SS=()
  out=$("$CLIENT" --no-defaults --protocol=socket -S "$(node_socket "$1")" -uroot --connect-timeout=5 -E \
    -e 'SHOW SLAVE STATUS' 2>/dev/null) || return 1
  while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]*([A-Za-z_]+):\ ?(.*)$ ]] && SS[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  done <<<"$out"
  return 0
}

# A comparable number for a GTID position such as "0-1-42,1-3-7": the sum of the sequence numbers. Within one
# replication topology each domain's sequence only grows, so a larger sum means a more advanced server.
gtid_score() {
  awk -v RS=',' -F'-' 'NF == 3 { s += $3 } END { printf "%d", s }' <<<"$1"
}

# --- starting and stopping ---------------------------------------------------------------------------------------

is_port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A pristine datadir made once by mariadb-install-db and copied for every node, which is faster than three
# installs and lets `up` rebuild a node whose data can no longer be trusted.
ensure_template() {
  [[ -d $TEMPLATE_DIR/data/mysql ]] && return 0
  log "initialising template datadir with $(basename "$INSTALL_DB")"
  rm -rf "$TEMPLATE_DIR.tmp"
  mkdir -p "$TEMPLATE_DIR.tmp"
  # install-db also creates root@<hostname>, which --skip-name-resolve ignores with a warning on every start.
  cat >"$TEMPLATE_DIR.tmp/extra.sql" <<'SQL'
DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');
DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');
SQL
  local args
  mapfile -t args < <(user_args)
  if ! "$INSTALL_DB" --no-defaults "${args[@]}" --datadir="$TEMPLATE_DIR.tmp/data" \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
    --extra-file="$TEMPLATE_DIR.tmp/extra.sql" >"$TEMPLATE_DIR.tmp/install.log" 2>&1; then
    tail -n 30 "$TEMPLATE_DIR.tmp/install.log" >&2
    die "mariadb-install-db failed (log: $TEMPLATE_DIR.tmp/install.log)"
  fi
  mv "$TEMPLATE_DIR.tmp" "$TEMPLATE_DIR"
}

# Starts one node in the background, detached from this shell, as a primary or replica. Does not wait.
launch_node() {
  local node=$1 role=$2 dir datadir socket port
  dir=$(node_dir "$node")
  datadir=$(node_datadir "$node")
  socket=$(node_socket "$node")
  port=$(node_port "$node")
  ((${#socket} < 108)) || die "socket path too long for a unix socket: $socket (shorten RWSPLIT_CLUSTER_DIR)"

  if needs_rebuild "$node" || [[ ! -d $datadir/mysql ]]; then
    local server_id
    server_id=$(node_server_id "$node")
    [[ -d $datadir ]] && server_id=$((server_id + 3))
    log "$node: fresh datadir from template, server id $server_id"
    rm -rf "$datadir"
    mkdir -p "$dir"
    cp -a "$TEMPLATE_DIR/data" "$datadir"
    printf '%s\n' "$server_id" >"$dir/server_id"
  fi
  mkdir -p "$dir/tmp"
  rm -f "$(node_pidfile "$node")"

  local args=(
    --no-defaults
    --datadir="$datadir"
    --socket="$socket"
    --pid-file="$(node_pidfile "$node")"
    --log-error="$(node_errlog "$node")"
    --tmpdir="$dir/tmp"
    --port="$port"
    --bind-address=127.0.0.1
    --skip-name-resolve
    --server-id="$(node_server_id "$node")"
    --report-host=127.0.0.1
    --report-port="$port"
    # Every node logs everything it applies and keeps its binlog forever, so any node can be promoted and a
    # rebuilt node can replay the whole history from whichever node is primary.
    --log-bin="$node-bin"
    --relay-log="$node-relay-bin"
    --log-slave-updates
    --binlog-format=ROW
    --binlog-expire-logs-seconds=0
    --gtid-strict-mode=1
    # Replication is (re)configured by `up`, which knows the current primary.
    --skip-slave-start
    # Tests round-trip 20 MiB BLOBs and open many pooled connections.
    --max-allowed-packet=1G
    --slave-max-allowed-packet=1G
    --max-connections=2000
    --open-files-limit=16384
    # Compiled-in default is latin1 under --no-defaults; Debian's packaged config would give utf8mb4.
    --character-set-server=utf8mb4
    --collation-server=utf8mb4_general_ci
    # Small and fast on a 2-core box; durability only matters up to a process crash here.
    --innodb-buffer-pool-size=128M
    --innodb-flush-log-at-trx-commit=2
    --sync-binlog=0
  )
  mapfile -t -O "${#args[@]}" args < <(user_args)
  [[ $role == replica ]] && args+=(--read-only=1)
  # TLS for clients that ask (the proxy's tls.backend); plain connections keep working.
  if [[ -s $CERT_DIR/server-cert.pem && -s $CERT_DIR/server-key.pem ]]; then
    args+=(--ssl-cert="$CERT_DIR/server-cert.pem" --ssl-key="$CERT_DIR/server-key.pem" --ssl-ca="$CERT_DIR/ca.pem")
  fi

  LOG_OFFSET[$node]=$(stat -c %s "$(node_errlog "$node")" 2>/dev/null || echo 0)
  log "$node: starting mariadbd on 127.0.0.1:$port as $role"
  # setsid + closed stdio: the server outlives this script and never holds a caller's pipe open. fd 9 is our
  # lock on the cluster dir and must not be inherited.
  setsid "$MARIADBD" "${args[@]}" </dev/null >>"$dir/stdout.log" 2>&1 9>&- &
}

fail_with_log() {
  local node=$1
  shift
  log "error: $*"
  log "last lines of $(node_errlog "$node"):"
  tail -n 25 "$(node_errlog "$node")" >&2 2>/dev/null || true
  exit 1
}

# Waits until the node answers over its socket, failing fast if mariadbd reports it is aborting.
wait_ready() {
  local node=$1 deadline=$((SECONDS + TIMEOUT))
  until is_running "$node" && sql "$node" 'SELECT 1' >/dev/null 2>&1; do
    if tail -c +"$((${LOG_OFFSET[$node]:-0} + 1))" "$(node_errlog "$node")" 2>/dev/null | grep -q '\[ERROR\] Aborting'; then
      fail_with_log "$node" "$node failed to start"
    fi
    ((SECONDS < deadline)) || fail_with_log "$node" "$node did not become ready within ${TIMEOUT}s"
    sleep 0.2
  done
}

# SIGTERM, wait, SIGKILL after the timeout. Only ever signals the pid recorded in the node's own pid file.
stop_nodes() {
  local node pid pids=() names=()
  for node in "$@"; do
    pid=$(node_pid "$node")
    [[ -n $pid ]] || continue
    log "$node: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    names+=("$node")
  done
  local deadline=$((SECONDS + TIMEOUT)) i alive
  while :; do
    alive=0
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null && alive=1
    done
    ((alive)) || break
    if ((SECONDS >= deadline)); then
      for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
          log "${names[$i]}: still running after ${TIMEOUT}s, sending SIGKILL"
          kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
      done
      deadline=$((SECONDS + 10))
    fi
    sleep 0.2
  done
}

# --- replication ---------------------------------------------------------------------------------------------------

# One-time setup of a brand-new primary: accounts and the marker table. Everything here is binlogged, so
# replicas that start from the template and replicate from the first GTID receive it too.
bootstrap_primary() {
  local node=$1
  sql "$node" 'SET GLOBAL read_only = 0'
  [[ $(sql "$node" "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl'") == 0 ]] || return 0
  log "$node: creating users app, monitor, repl"
  sql "$node" "
    CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
    GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
    CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitor';
    GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR, REPLICATION MASTER ADMIN ON *.* TO 'monitor'@'%';
    GRANT SELECT ON performance_schema.* TO 'monitor'@'%';
    CREATE USER 'app'@'%' IDENTIFIED BY 'app';
    GRANT ALL PRIVILEGES ON *.* TO 'app'@'%' WITH GRANT OPTION;
    -- Since 10.11 only READ_ONLY ADMIN (not SUPER) bypasses read_only: without it app gets error 1290 on replicas.
    REVOKE READ_ONLY ADMIN ON *.* FROM 'app'@'%';
    CREATE DATABASE rwsplit_cluster;
    CREATE TABLE rwsplit_cluster.marker (id INT PRIMARY KEY, written_at DATETIME(6) NOT NULL);"
}

change_master_sql() {
  printf "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER='repl', MASTER_PASSWORD='repl', \
MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1" "$(node_port "$1")"
}

# Points a replica at the primary unless it already replicates from it with a healthy SQL thread.
configure_replica() {
  local node=$1 primary=$2
  read_slave_status "$node" || fail_with_log "$node" "cannot query $node"
  if [[ ${SS[Master_Port]:-} == "$(node_port "$primary")" && ${SS[Slave_SQL_Running]:-} == Yes &&
    ${SS[Slave_IO_Running]:-} != No ]]; then
    return 0
  fi
  log "$node: replicating from $primary (127.0.0.1:$(node_port "$primary"), GTID slave_pos)"
  sql "$node" "SET GLOBAL read_only = 1; STOP SLAVE; $(change_master_sql "$primary"); START SLAVE"
}

# Waits until the replica runs both threads and has applied the primary's binlog up to `pos`.
wait_caught_up() {
  local node=$1 pos=$2 deadline=$((SECONDS + TIMEOUT))
  while :; do
    read_slave_status "$node" || true
    if [[ ${SS[Slave_SQL_Running]:-} == No && ${SS[Last_SQL_Errno]:-0} != 0 ]]; then
      fail_with_log "$node" "$node: replication SQL thread stopped: ${SS[Last_SQL_Error]:-}"
    fi
    if [[ ${SS[Last_IO_Errno]:-0} == 1236 ]]; then
      fail_with_log "$node" "$node: primary cannot serve its GTID position (${SS[Last_IO_Error]:-});" \
        "run: scripts/cluster.sh down --purge && scripts/cluster.sh up"
    fi
    if [[ ${SS[Slave_IO_Running]:-} == Yes && ${SS[Slave_SQL_Running]:-} == Yes ]]; then
      # MASTER_GTID_WAIT blocks for up to 1s and returns 0 once gtid_slave_pos includes pos.
      [[ $(sql "$node" "SELECT MASTER_GTID_WAIT('$pos', 1)" 2>/dev/null) == 0 ]] && return 0
    else
      sleep 0.2
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "$node" "$node not in sync after ${TIMEOUT}s: IO=${SS[Slave_IO_Running]:-?}" \
        "SQL=${SS[Slave_SQL_Running]:-?} io_error='${SS[Last_IO_Error]:-}' gtid_slave_pos=$(sql "$node" \
          'SELECT @@gtid_slave_pos' 2>/dev/null || true) target=$pos"
    fi
  done
}

# Writes a marker row on the primary and waits until every running replica has applied it.
sync_replicas() {
  local primary=$1 pos node
  pos=$(sql "$primary" "REPLACE INTO rwsplit_cluster.marker VALUES (1, NOW(6)); SELECT @@gtid_binlog_pos")
  for node in $(replicas_of "$primary"); do
    is_running "$node" || continue
    wait_caught_up "$node" "$pos"
    log "$node: in sync with $primary at $pos"
  done
}

# --- commands ------------------------------------------------------------------------------------------------------

lock_cluster_dir() {
  mkdir -p "$CLUSTER_DIR"
  touch "$OWNER_MARK"
  exec 9>"$CLUSTER_DIR/.lock"
  flock -w "$TIMEOUT" 9 || die "another scripts/cluster.sh holds $CLUSTER_DIR/.lock"
}

cmd_up() {
  ensure_mariadb
  "$SCRIPT_DIR/certs.sh" "$CERT_DIR" || log "warning: scripts/certs.sh failed; nodes start without TLS"
  lock_cluster_dir
  load_state
  ensure_template

  local node launched=()
  for node in "${NODES[@]}"; do
    # Still marked for rebuild while running: an earlier `up` failed half-way through rebuilding it.
    is_running "$node" && needs_rebuild "$node" && stop_nodes "$node"
    is_running "$node" && continue
    if is_port_in_use "$(node_port "$node")"; then
      die "$node: port $(node_port "$node") is taken by another process; set RWSPLIT_CLUSTER_PORT_BASE"
    fi
  done
  for node in "${NODES[@]}"; do
    is_running "$node" && continue
    if [[ $node == "$PRIMARY" ]]; then
      launch_node "$node" primary
    else
      launch_node "$node" replica
    fi
    launched+=("$node")
  done
  for node in "${launched[@]}"; do
    wait_ready "$node"
  done

  bootstrap_primary "$PRIMARY"
  for node in $(replicas_of "$PRIMARY"); do
    configure_replica "$node" "$PRIMARY"
  done
  sync_replicas "$PRIMARY"
  # Only now is a rebuilt node known to hold the full history.
  for node in "${launched[@]}"; do
    drop_rebuild "$node"
  done
  save_state
  ((${#launched[@]})) || log "already running"
  cmd_status
}

cmd_down() {
  local purge=0
  case ${1:-} in
    --purge) purge=1 ;;
    "") ;;
    *) usage ;;
  esac
  [[ -d $CLUSTER_DIR ]] || {
    log "nothing to stop: $CLUSTER_DIR does not exist"
    return 0
  }
  lock_cluster_dir
  stop_nodes "${NODES[@]}"
  if ((purge)); then
    [[ -f $OWNER_MARK && $CLUSTER_DIR != / ]] || die "refusing to delete $CLUSTER_DIR: not a cluster dir"
    log "deleting $CLUSTER_DIR"
    rm -rf "$CLUSTER_DIR"
  fi
  log "down"
}

# One line of the status table. The role comes from the server itself (@@read_only), not from the state file.
status_row() {
  local node=$1 pid role=- state=down lag=- source=- gtid=-
  pid=$(node_pid "$node")
  if [[ -n $pid ]] && sql "$node" 'SELECT 1' >/dev/null 2>&1; then
    state=up
    local read_only
    IFS=$'\t' read -r read_only gtid < <(sql "$node" 'SELECT @@read_only, @@gtid_current_pos')
    if [[ $read_only == 0 ]]; then role=primary; else role=replica; fi
    if read_slave_status "$node" && [[ -n ${SS[Master_Port]:-} ]]; then
      lag=${SS[Seconds_Behind_Master]:-NULL}
      source="${SS[Master_Port]} io=${SS[Slave_IO_Running]} sql=${SS[Slave_SQL_Running]}"
    fi
  fi
  printf '%-6s %-6s %-8s %-8s %-5s %-5s %-26s %s\n' \
    "$node" "$(node_port "$node")" "${pid:--}" "$role" "$state" "$lag" "$source" "${gtid:--}"
}

cmd_status() {
  find_binaries || die "mariadb is not installed; run: scripts/cluster.sh up"
  load_state
  local node rc=0
  printf '%-6s %-6s %-8s %-8s %-5s %-5s %-26s %s\n' NAME PORT PID ROLE STATE LAG SOURCE GTID_CURRENT_POS
  for node in "${NODES[@]}"; do
    status_row "$node"
    is_running "$node" || rc=1
  done
  return "$rc"
}

cmd_env() {
  load_state
  local label node i=0
  printf 'RWSPLIT_CLUSTER_DIR=%q\n' "$CLUSTER_DIR"
  printf 'RWSPLIT_CLUSTER_PORT_BASE=%q\n' "$PORT_BASE"
  for node in "$PRIMARY" $(replicas_of "$PRIMARY"); do
    if ((i == 0)); then label=PRIMARY; else label=REPLICA$i; fi
    printf 'RWSPLIT_%s_NODE=%s\n' "$label" "$node"
    printf 'RWSPLIT_%s_PORT=%s\n' "$label" "$(node_port "$node")"
    printf 'RWSPLIT_%s_PID=%s\n' "$label" "$(node_pid "$node")"
    printf 'RWSPLIT_%s_SOCKET=%q\n' "$label" "$(node_socket "$node")"
    i=$((i + 1))
  done
}

# Waits (bounded) until a replica has applied everything it already received from the dead primary.
drain_relay_log() {
  local node=$1 deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    read_slave_status "$node" || return 0
    [[ ${SS[Slave_SQL_Running]:-} == Yes ]] || return 0
    [[ ${SS[Master_Log_File]:-} == "${SS[Relay_Master_Log_File]:-}" &&
      ${SS[Read_Master_Log_Pos]:-} == "${SS[Exec_Master_Log_Pos]:-}" ]] && return 0
    sleep 0.2
  done
  log "$node: relay log not fully applied after 10s, comparing positions anyway"
}

cmd_failover() {
  find_binaries || die "mariadb is not installed; run: scripts/cluster.sh up"
  lock_cluster_dir
  load_state
  local old=$PRIMARY pid node candidates=()
  for node in $(replicas_of "$old"); do
    is_running "$node" && candidates+=("$node")
  done
  ((${#candidates[@]})) || die "no running replica to promote"

  pid=$(node_pid "$old")
  if [[ -n $pid ]]; then
    log "$old: kill -9 primary pid $pid"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  else
    log "$old: primary already down"
  fi
  rm -f "$(node_pidfile "$old")"

  local best="" best_score=-1 gtid score
  for node in "${candidates[@]}"; do
    drain_relay_log "$node"
    gtid=$(sql "$node" 'SELECT @@gtid_current_pos')
    score=$(gtid_score "$gtid")
    log "$node: gtid_current_pos=$gtid"
    if ((score > best_score)); then
      best=$node
      best_score=$score
    fi
  done

  log "$best: promoting to primary (STOP SLAVE; RESET SLAVE ALL; read_only=0)"
  sql "$best" 'STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0'
  PRIMARY=$best
  needs_rebuild "$old" || REBUILD+=("$old")
  save_state

  for node in "${candidates[@]}"; do
    [[ $node == "$best" ]] && continue
    log "$node: repointing to $best (127.0.0.1:$(node_port "$best"))"
    sql "$node" "STOP SLAVE; $(change_master_sql "$best"); START SLAVE"
  done
  sync_replicas "$best"
  log "failover done: $best is primary on port $(node_port "$best"); $old is down and is rebuilt as a replica by 'up'"
  cmd_status || true
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up) cmd_up ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    failover) cmd_failover ;;
    *) usage ;;
  esac
}

main "$@"
