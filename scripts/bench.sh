#!/usr/bin/env bash
# End-to-end benchmark: sysbench directly against the primary and through rwsplit, side by side in one run, plus a
# connection-scale run (many idle clients and a few active ones). Prints a markdown table and writes it to a file.
#
#   scripts/bench.sh                         the whole run (about 25 minutes on a 2-core machine)
#   RWSPLIT_BENCH_DURATION=5 RWSPLIT_BENCH_REPS=1 scripts/bench.sh     a quick look
#   scripts/bench.sh profile                 instructions (callgrind) and system calls (strace) per point select:
#                                            exact counts that repeat on a noisy machine, for before/after checks
#   scripts/bench.sh fairness                point-select latency (8 clients) while one client sends 16 MiB queries
#                                            and one reads 16 MiB results, directly and through the proxy
#   scripts/bench.sh memory                  the proxy's resident memory idle, while clients send 20 MiB queries,
#                                            and after they stop (buffers grown for one big packet are given back)
#   RWSPLIT_CLUSTER_DIR=/tmp/rwsplit-bench-cluster RWSPLIT_CLUSTER_PORT_BASE=15306 scripts/cluster.sh down
#                                            stop the benchmark's MariaDB cluster afterwards (it is left running)
#
# The benchmark uses its own cluster (scripts/cluster.sh with RWSPLIT_CLUSTER_DIR=${TMPDIR:-/tmp}/rwsplit-bench-cluster
# and RWSPLIT_CLUSTER_PORT_BASE=15306 unless those are set), so integration tests that fail over or restart the
# default test cluster cannot disturb a run. Set both variables to benchmark another cluster.
#
# What it does: `scripts/cluster.sh up`; installs Debian's sysbench if missing; `cargo build --release`; starts
# target/release/rwsplit with a generated config (free 127.0.0.1 ports, generous pools); prepares sysbench tables
# in database `sbtest` on the primary and waits for the replicas; then, for every workload × threads × PS mode,
# runs sysbench interleaved: direct, proxy[, replica, relay], direct, proxy[, ...], ... Each run records QPS, p50 and
# p95 latency (from sysbench's latency histogram, microsecond resolution), rwsplit's CPU time per query (utime +
# stime of its /proc/<pid>/stat around the run, divided by the queries sysbench reports), where the proxied
# statements ran (each node's `Questions` counter), and the CPU used by everything else on the machine (other
# load, e.g. tests running at the same time).
#
# Targets: "direct" is the primary; "proxy" is rwsplit, which sends reads outside transactions to the replicas
# (point selects: replicas; sysbench's read_only and read_write wrap everything in BEGIN/COMMIT, so they stay on the
# primary); for point selects only, "replica" is a direct connection to one replica (the baseline for reads the proxy
# moved to replicas) and "relay" is benches/relay.rs, a bare tokio TCP relay to the primary whose CPU per query is
# the floor the extra hop puts under any user-space proxy.
#
# Environment (defaults in brackets):
#   RWSPLIT_BENCH_DURATION    seconds per sysbench run [8]
#   RWSPLIT_BENCH_REPS        repetitions of each configuration [3]
#   RWSPLIT_BENCH_WARMUP      seconds of unrecorded warm-up per configuration and target [2]
#   RWSPLIT_BENCH_WORKLOADS   sysbench tests [oltp_point_select oltp_read_only oltp_read_write]
#   RWSPLIT_BENCH_THREADS     client threads [8 32]
#   RWSPLIT_BENCH_LATENCY_THREADS  extra thread counts for oltp_point_select only (unloaded latency; "" for none) [1]
#   RWSPLIT_BENCH_PS_MODES    sysbench --db-ps-mode values [disable auto]
#   RWSPLIT_BENCH_REPLICA     1 adds the direct-to-replica baseline for oltp_point_select [1]
#   RWSPLIT_BENCH_RELAY       1 adds the bare TCP relay baseline for oltp_point_select [1]
#   RWSPLIT_BENCH_TABLES, RWSPLIT_BENCH_TABLE_SIZE   sysbench data set [4, 10000]
#   RWSPLIT_BENCH_IDLE_CLIENTS, RWSPLIT_BENCH_ACTIVE_CLIENTS, RWSPLIT_BENCH_SCALE_SECS   connection scale [5000, 64, 10]
#   RWSPLIT_BENCH_SKIP        space-separated phases to skip: sysbench, scale
#   RWSPLIT_BENCH_OUT         output directory [target/bench-results]
#   RWSPLIT_BENCH_BINARY      the rwsplit binary to measure, e.g. an older build for an A/B [target/release/rwsplit]
#   RWSPLIT_PROFILE_QUERIES   point selects measured by `profile` [10000 under callgrind, 2x that under strace]
#
# Prepared statements: a build that answers COM_STMT_* with an error (ERR 1047 before prepared statements landed)
# makes sysbench's --db-ps-mode=auto runs through the proxy fail; each such run is reported as failed, with
# sysbench's error, instead of aborting the script.
# Only processes this script started are stopped, by pid; the cluster keeps running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export RWSPLIT_CLUSTER_DIR="${RWSPLIT_CLUSTER_DIR:-${TMPDIR:-/tmp}/rwsplit-bench-cluster}"
export RWSPLIT_CLUSTER_PORT_BASE="${RWSPLIT_CLUSTER_PORT_BASE:-15306}"

DURATION=${RWSPLIT_BENCH_DURATION:-8}
REPS=${RWSPLIT_BENCH_REPS:-3}
WARMUP=${RWSPLIT_BENCH_WARMUP:-2}
WORKLOADS=${RWSPLIT_BENCH_WORKLOADS:-oltp_point_select oltp_read_only oltp_read_write}
THREADS=${RWSPLIT_BENCH_THREADS:-8 32}
LATENCY_THREADS=${RWSPLIT_BENCH_LATENCY_THREADS-1}
PS_MODES=${RWSPLIT_BENCH_PS_MODES:-disable auto}
REPLICA_BASELINE=${RWSPLIT_BENCH_REPLICA:-1}
RELAY_BASELINE=${RWSPLIT_BENCH_RELAY:-1}
TABLES=${RWSPLIT_BENCH_TABLES:-4}
TABLE_SIZE=${RWSPLIT_BENCH_TABLE_SIZE:-10000}
IDLE_CLIENTS=${RWSPLIT_BENCH_IDLE_CLIENTS:-5000}
ACTIVE_CLIENTS=${RWSPLIT_BENCH_ACTIVE_CLIENTS:-64}
SCALE_SECS=${RWSPLIT_BENCH_SCALE_SECS:-10}
SKIP=${RWSPLIT_BENCH_SKIP:-}
OUT_DIR=${RWSPLIT_BENCH_OUT:-$ROOT/target/bench-results}

STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK="$OUT_DIR/run-$STAMP"
RUNS_TSV="$WORK/runs.tsv"
RESULT_MD="$OUT_DIR/bench-$STAMP.md"
NPROC=$(nproc)
CLK_TCK=$(getconf CLK_TCK)

PROXY_BIN=${RWSPLIT_BENCH_BINARY:-./target/release/rwsplit}
PROFILE_QUERIES=${RWSPLIT_PROFILE_QUERIES:-10000}
PROXY_PID=""
PROXY_PORT=""
RELAY_PID=""
RELAY_PORT=""

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
has() { command -v "$1" >/dev/null 2>&1; }
skipped() { [[ " $SKIP " == *" $1 "* ]]; }

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif has sudo; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# --- processes ---------------------------------------------------------------------------------------------------

# Stops one process this script started, by pid: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
stop_proxy() {
  stop_pid "$PROXY_PID"
  PROXY_PID=""
}
stop_relay() {
  stop_pid "$RELAY_PID"
  RELAY_PID=""
}
trap 'stop_proxy; stop_relay' EXIT

is_port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    is_port_in_use "$p" || {
      printf '%s' "$p"
      return 0
    }
  done
  die "no free port found"
}

# utime + stime of a process, in clock ticks (0 if it is gone).
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  # Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}

# Busy clock ticks of the whole machine (all CPUs).
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Runs SQL as root over a node's unix socket; tab-separated, no headers.
node_sql() { mariadb --no-defaults --protocol=socket -S "$1" -uroot --connect-timeout=5 -N -B -e "$2"; }

# The node's Questions counter; 0 when it cannot be read (the run's "on replicas" share is then meaningless).
questions() {
  local n
  n=$(node_sql "$1" "SHOW GLOBAL STATUS LIKE 'Questions'" 2>/dev/null | awk '{ print $2 }') || true
  [[ -n $n ]] || log "warning: cannot read Questions over $1"
  printf '%s\n' "${n:-0}"
}

# --- setup -------------------------------------------------------------------------------------------------------

ensure_sysbench() {
  has sysbench && return 0
  log "installing sysbench with apt-get"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 sysbench
  has sysbench || die "sysbench still missing after apt-get install"
}

write_config() {
  local file=$1 port=$2
  cat >"$file" <<EOF
# Generated by scripts/bench.sh for one benchmark run.
[listen]
mysql = "127.0.0.1:$port"
admin = "127.0.0.1:$(free_port)"
http = "127.0.0.1:$(free_port)"
max_client_connections = $((IDLE_CLIENTS + ACTIVE_CLIENTS + 1000))

[[backends]]
name = "$RWSPLIT_PRIMARY_NODE"
host = "127.0.0.1"
port = $RWSPLIT_PRIMARY_PORT
role = "primary"

[[backends]]
name = "$RWSPLIT_REPLICA1_NODE"
host = "127.0.0.1"
port = $RWSPLIT_REPLICA1_PORT
role = "replica"

[[backends]]
name = "$RWSPLIT_REPLICA2_NODE"
host = "127.0.0.1"
port = $RWSPLIT_REPLICA2_PORT
role = "replica"

[[users]]
name = "app"
password = "app"

[pool]
max_connections_per_backend = 200

[logging]
level = "warn"
EOF
}

# start_proxy [WRAPPER...]: starts $PROXY_BIN, under WRAPPER (e.g. valgrind) when given.
start_proxy() {
  local config="$WORK/rwsplit.toml"
  PROXY_PORT=$(free_port)
  write_config "$config" "$PROXY_PORT"
  "$@" "$PROXY_BIN" --config "$config" >>"$WORK/rwsplit.log" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 600); do
    is_port_in_use "$PROXY_PORT" && break
    kill -0 "$PROXY_PID" 2>/dev/null || die "rwsplit exited at startup; see $WORK/rwsplit.log"
    sleep 0.1
  done
  is_port_in_use "$PROXY_PORT" || die "rwsplit did not listen on $PROXY_PORT; see $WORK/rwsplit.log"
  log "rwsplit pid $PROXY_PID on 127.0.0.1:$PROXY_PORT"
}

# Path of a harness-less bench binary (benches/NAME.rs), built in the bench profile.
bench_exe() {
  cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
    grep -o "\"executable\":\"[^\"]*/$1-[^\"]*\"" | tail -1 | cut -d'"' -f4
}

start_relay() {
  local exe
  exe=$(bench_exe relay)
  [[ -x $exe ]] || die "could not build benches/relay.rs"
  RELAY_PORT=$(free_port)
  RELAY_LISTEN="127.0.0.1:$RELAY_PORT" RELAY_BACKEND="127.0.0.1:$RWSPLIT_PRIMARY_PORT" "$exe" >"$WORK/relay.log" 2>&1 &
  RELAY_PID=$!
  for _ in $(seq 100); do
    is_port_in_use "$RELAY_PORT" && break
    sleep 0.1
  done
  is_port_in_use "$RELAY_PORT" || die "relay did not listen on $RELAY_PORT; see $WORK/relay.log"
  log "relay pid $RELAY_PID on 127.0.0.1:$RELAY_PORT -> primary"
}

sysbench_args() {
  printf '%s\n' --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app --mysql-db=sbtest \
    --tables="$TABLES" --table-size="$TABLE_SIZE"
}

prepare_tables() {
  node_sql "$RWSPLIT_PRIMARY_SOCKET" "CREATE DATABASE IF NOT EXISTS sbtest"
  local ok=1 t n
  for t in $(seq "$TABLES"); do
    n=$(node_sql "$RWSPLIT_PRIMARY_SOCKET" "SELECT COUNT(*) FROM sbtest.sbtest$t" 2>/dev/null || echo -1)
    [[ $n == "$TABLE_SIZE" ]] || ok=0
  done
  if ((ok)); then
    log "sysbench tables already prepared ($TABLES x $TABLE_SIZE rows)"
  else
    log "preparing sysbench tables ($TABLES x $TABLE_SIZE rows) on the primary"
    mapfile -t args < <(sysbench_args)
    sysbench oltp_common "${args[@]}" --mysql-port="$RWSPLIT_PRIMARY_PORT" cleanup >"$WORK/prepare.log" 2>&1 || true
    sysbench oltp_common "${args[@]}" --mysql-port="$RWSPLIT_PRIMARY_PORT" prepare >>"$WORK/prepare.log" 2>&1 ||
      die "sysbench prepare failed; see $WORK/prepare.log"
  fi
  local pos sock
  pos=$(node_sql "$RWSPLIT_PRIMARY_SOCKET" "SELECT @@gtid_binlog_pos")
  for sock in "$RWSPLIT_REPLICA1_SOCKET" "$RWSPLIT_REPLICA2_SOCKET"; do
    [[ $(node_sql "$sock" "SELECT MASTER_GTID_WAIT('$pos', 300)") == 0 ]] || die "replica $sock did not reach $pos"
  done
  log "replicas caught up at $pos"
}

# --- one sysbench run --------------------------------------------------------------------------------------------

# Prints "p50_us p95_us" from sysbench's --histogram output (values in ms, ~1.8% wide buckets).
histogram_percentiles() {
  awk '
    /Latency histogram/ { on = 1; next }
    on && /^ *[0-9.]+ \|/ { n++; v[n] = $1; c[n] = $NF; total += $NF; next }
    on && n && !/^ *[0-9.]+ \|/ { on = 0 }
    END {
      if (total == 0) { print "- -"; exit }
      for (i = 1; i <= n; i++) {
        cum += c[i]
        if (!p50 && cum >= total * 0.50) p50 = v[i]
        if (!p95 && cum >= total * 0.95) p95 = v[i]
      }
      printf "%.0f %.0f\n", p50 * 1000, p95 * 1000
    }' "$1"
}

# run_one KIND(recorded|warmup) TARGET PORT WORKLOAD THREADS PS_MODE REP
run_one() {
  local kind=$1 target=$2 port=$3 workload=$4 threads=$5 ps=$6 rep=$7
  local secs=$DURATION
  [[ $kind == warmup ]] && secs=$WARMUP
  local logf="$WORK/$workload-t$threads-$ps-$target-$kind$rep.log"
  local q_before=() q_after=() sock proxy_before=0 proxy_after=0 db_before=0 db_after=0 busy_before busy_after pid
  # The process in the middle whose CPU is measured: rwsplit or the relay.
  local mid_pid=$PROXY_PID
  [[ $target == relay ]] && mid_pid=$RELAY_PID
  local sockets=("$RWSPLIT_PRIMARY_SOCKET" "$RWSPLIT_REPLICA1_SOCKET" "$RWSPLIT_REPLICA2_SOCKET")
  local db_pids=("$RWSPLIT_PRIMARY_PID" "$RWSPLIT_REPLICA1_PID" "$RWSPLIT_REPLICA2_PID")
  if [[ $kind == recorded ]]; then
    for sock in "${sockets[@]}"; do q_before+=("$(questions "$sock")"); done
  fi
  for pid in "${db_pids[@]}"; do db_before=$((db_before + $(cpu_ticks "$pid"))); done
  [[ -n $mid_pid ]] && proxy_before=$(cpu_ticks "$mid_pid")
  busy_before=$(machine_busy_ticks)
  local started=$EPOCHREALTIME rc=0 times TIMEFORMAT='%3U %3S'
  mapfile -t args < <(sysbench_args)
  # bash's `time` reports sysbench's own user and system CPU seconds.
  { time sysbench "$workload" "${args[@]}" --mysql-port="$port" --threads="$threads" --time="$secs" \
    --report-interval=0 --percentile=95 --histogram=on --db-ps-mode="$ps" run >"$logf" 2>&1; } 2>"$logf.time" || rc=$?
  times=$(tail -n 1 "$logf.time")
  local elapsed
  elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
  busy_after=$(machine_busy_ticks)
  [[ -n $mid_pid ]] && proxy_after=$(cpu_ticks "$mid_pid")
  for pid in "${db_pids[@]}"; do db_after=$((db_after + $(cpu_ticks "$pid"))); done
  [[ $kind == recorded ]] || return 0
  for sock in "${sockets[@]}"; do q_after+=("$(questions "$sock")"); done

  local queries qps status p50 p95 cpu_us replica_share other_pct
  queries=$(awk '/^ *queries:/ { print $2; exit }' "$logf")
  qps=$(awk '/^ *queries:/ { gsub(/\(/, "", $3); print $3; exit }' "$logf")
  read -r p50 p95 < <(histogram_percentiles "$logf")
  if ((rc == 0)) && [[ -n $queries && $queries != 0 ]]; then
    status=ok
  else
    status="failed: $(grep -m1 -E 'FATAL|error|Error' "$logf" | tr '\t|' '  ' | cut -c1-160)"
    [[ $status == "failed: " ]] && status="failed: sysbench exit $rc"
    queries=${queries:-0}
    qps=${qps:-0}
  fi
  cpu_us=-
  if [[ $target == proxy || $target == relay ]] && [[ $status == ok ]]; then
    cpu_us=$(awk -v t=$((proxy_after - proxy_before)) -v hz="$CLK_TCK" -v q="$queries" 'BEGIN { printf "%.1f", t / hz * 1e6 / q }')
  fi
  replica_share=-
  if [[ $status == ok ]]; then
    local dp=$((q_after[0] - q_before[0])) dr=$((q_after[1] - q_before[1] + q_after[2] - q_before[2]))
    ((dp + dr > 0)) && replica_share=$(awk -v r="$dr" -v t="$((dp + dr))" 'BEGIN { printf "%.2f", r / t }')
  fi
  # Everything that is neither sysbench, rwsplit nor the three MariaDB servers, as a share of all CPUs.
  local sb_ticks
  sb_ticks=$(awk -v u="${times% *}" -v s="${times#* }" -v hz="$CLK_TCK" 'BEGIN { printf "%d", (u + s) * hz }')
  other_pct=$(awk -v busy=$((busy_after - busy_before)) -v mine=$((proxy_after - proxy_before + db_after - db_before + sb_ticks)) \
    -v secs="$elapsed" -v hz="$CLK_TCK" -v n="$NPROC" \
    'BEGIN { o = (busy - mine) / (secs * hz * n) * 100; if (o < 0) o = 0; printf "%.0f", o }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$threads" "$ps" "$target" "$rep" \
    "$status" "$queries" "$qps" "$p50" "$p95" "$cpu_us" "$replica_share" "$other_pct" >>"$RUNS_TSV"
  log "$(printf '%-18s t=%-3s ps=%-7s %-7s #%s %-8s qps=%-9s p50=%sus p95=%sus cpu/q=%sus replicas=%s other=%s%%' \
    "$workload" "$threads" "$ps" "$target" "$rep" "${status%%:*}" "$qps" "$p50" "$p95" "$cpu_us" "$replica_share" "$other_pct")"
}

run_matrix() {
  local workload threads ps rep target
  for workload in $WORKLOADS; do
    local thread_list=$THREADS
    [[ $workload == oltp_point_select ]] && thread_list="$LATENCY_THREADS $THREADS"
    for threads in $thread_list; do
      for ps in $PS_MODES; do
        local targets=(direct proxy)
        [[ $workload == oltp_point_select && $REPLICA_BASELINE == 1 ]] && targets+=(replica)
        [[ $workload == oltp_point_select && $RELAY_BASELINE == 1 ]] && targets+=(relay)
        for target in "${targets[@]}"; do
          run_one warmup "$target" "$(target_port "$target")" "$workload" "$threads" "$ps" 0 || true
        done
        for rep in $(seq "$REPS"); do
          for target in "${targets[@]}"; do
            run_one recorded "$target" "$(target_port "$target")" "$workload" "$threads" "$ps" "$rep"
          done
        done
      done
    done
  done
}

target_port() {
  case $1 in
    direct) printf '%s' "$RWSPLIT_PRIMARY_PORT" ;;
    proxy) printf '%s' "$PROXY_PORT" ;;
    replica) printf '%s' "$RWSPLIT_REPLICA1_PORT" ;;
    relay) printf '%s' "$RELAY_PORT" ;;
  esac
}

# --- report ------------------------------------------------------------------------------------------------------

median() {
  (($#)) || {
    echo -
    return
  }
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Median of column $2 over the runs of one configuration and target that succeeded.
col_median() {
  local key=$1 col=$2
  mapfile -t vals < <(awk -F'\t' -v k="$key" -v c="$col" '$1 "/" $2 "/" $3 "/" $4 == k && $6 == "ok" && $c != "-" { print $c }' "$RUNS_TSV")
  median "${vals[@]}"
}

report_sysbench() {
  echo "| workload | threads | ps-mode | target | runs ok | median QPS | vs direct | p50 µs | p95 µs | CPU µs/query | on replicas | other load |"
  echo "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  local workload threads ps target key ok total qps direct_qps ratio failure
  while IFS=$'\t' read -r workload threads ps target; do
    key="$workload/$threads/$ps/$target"
    total=$(awk -F'\t' -v k="$key" '$1 "/" $2 "/" $3 "/" $4 == k' "$RUNS_TSV" | wc -l)
    ok=$(awk -F'\t' -v k="$key" '$1 "/" $2 "/" $3 "/" $4 == k && $6 == "ok"' "$RUNS_TSV" | wc -l)
    if ((ok == 0)); then
      failure=$(awk -F'\t' -v k="$key" '$1 "/" $2 "/" $3 "/" $4 == k { print $6; exit }' "$RUNS_TSV")
      echo "| $workload | $threads | $ps | $target | 0/$total | ${failure} | | | | | | |"
      continue
    fi
    qps=$(col_median "$key" 8)
    direct_qps=$(col_median "$workload/$threads/$ps/direct" 8)
    ratio=-
    [[ $target != direct && $direct_qps != - ]] &&
      ratio=$(awk -v a="$qps" -v b="$direct_qps" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }')
    [[ $target == direct ]] && ratio="1.00×"
    printf '| %s | %s | %s | %s | %s/%s | %.0f | %s | %s | %s | %s | %s | %s%% |\n' "$workload" "$threads" "$ps" "$target" \
      "$ok" "$total" "$qps" "$ratio" "$(col_median "$key" 9)" "$(col_median "$key" 10)" "$(col_median "$key" 11)" \
      "$(col_median "$key" 12)" "$(col_median "$key" 13)"
  done < <(awk -F'\t' '!seen[$1 FS $2 FS $3 FS $4]++ { print $1 "\t" $2 "\t" $3 "\t" $4 }' "$RUNS_TSV")
}

machine_header() {
  local mem cpu mariadb_version rustc_version
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mariadb_version=$(node_sql "$RWSPLIT_PRIMARY_SOCKET" "SELECT VERSION()")
  rustc_version=$(rustc --version 2>/dev/null || echo unknown)
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- rwsplit: $(git describe --always --dirty 2>/dev/null || echo unknown) (release build), $rustc_version"
  echo "- MariaDB $mariadb_version (1 primary + 2 replicas, scripts/cluster.sh on ports $RWSPLIT_CLUSTER_PORT_BASE+), $(sysbench --version)"
  echo "- machine: $NPROC CPUs ($cpu), $mem RAM; client, proxy and the three servers share it"
  echo "- load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- settings: ${DURATION}s per run, $REPS repetitions, interleaved direct/proxy[/replica], $TABLES tables × $TABLE_SIZE rows"
}

# --- connection scale --------------------------------------------------------------------------------------------

run_scale() {
  local exe limit
  exe=$(bench_exe connscale)
  [[ -x $exe ]] || die "could not build benches/connscale.rs"
  limit=$(ulimit -Hn)
  [[ $limit == unlimited ]] && limit=65536
  ((limit > 65536)) && limit=65536
  ulimit -n "$limit"
  local need=$((IDLE_CLIENTS + ACTIVE_CLIENTS + 200))
  ((limit >= need)) || die "ulimit -n hard limit $limit is below the $need descriptors the scale run needs"
  # A fresh proxy, so the measured memory is what the connections themselves cost.
  stop_proxy
  start_proxy
  log "connection scale: $IDLE_CLIENTS idle + $ACTIVE_CLIENTS active clients through rwsplit (pid $PROXY_PID)"
  CONNSCALE_PORT=$PROXY_PORT CONNSCALE_PID=$PROXY_PID CONNSCALE_IDLE=$IDLE_CLIENTS CONNSCALE_ACTIVE=$ACTIVE_CLIENTS \
    CONNSCALE_SECS=$SCALE_SECS CONNSCALE_TABLES=$TABLES CONNSCALE_ROWS=$TABLE_SIZE \
    CONNSCALE_BACKEND_PORTS="$RWSPLIT_PRIMARY_PORT,$RWSPLIT_REPLICA1_PORT,$RWSPLIT_REPLICA2_PORT" \
    "$exe" >"$WORK/connscale.out" 2>"$WORK/connscale.err" || {
    log "connscale failed: $(tail -n 3 "$WORK/connscale.err")"
    return 0
  }
  cat "$WORK/connscale.out" >&2
}

report_scale() {
  local f="$WORK/connscale.out"
  [[ -s $f ]] || {
    echo "connection-scale run not done or failed (see $WORK/connscale.err)"
    return
  }
  get() { awk -F= -v k="$1" '$1 == k { print $2 }' "$f"; }
  echo "| measure | value |"
  echo "|---|---:|"
  echo "| idle clients logged in (each ran one point select) | $(get idle_clients) (errors: $(get idle_errors), ${IDLE_CLIENTS} asked) |"
  echo "| time to open them, 32 at a time | $(get idle_connect_secs) s |"
  echo "| rwsplit RSS before / with idle clients | $(get rss_before_kib) KiB / $(get rss_idle_kib) KiB |"
  echo "| rwsplit memory mappings before / with idle clients | $(get maps_before) / $(get maps_idle) |"
  echo "| **RSS per idle client connection** | **$(awk -v b="$(get rss_per_idle_client_bytes)" 'BEGIN { printf "%.1f KiB", b / 1024 }')** |"
  echo "| backend connections before / idle / max while $(get active_clients) clients active | $(get backend_conns_before) / $(get backend_conns_idle) / $(get backend_conns_active_max) |"
  echo "| active point-select QPS with the idle clients connected | $(get active_qps) (errors: $(get active_errors)) |"
  echo "| rwsplit max RSS while active | $(get rss_active_max_kib) KiB |"
}

# --- main --------------------------------------------------------------------------------------------------------

# --- profile: exact per-query costs ------------------------------------------------------------------------------

# point_selects PORT THREADS EVENTS: a fixed number of point selects (text protocol) through PORT.
point_selects() {
  mapfile -t args < <(sysbench_args)
  sysbench oltp_point_select "${args[@]}" --mysql-port="$1" --threads="$2" --events="$3" --time=0 \
    --report-interval=0 --db-ps-mode=disable run >>"$WORK/profile-sysbench.log" 2>&1 ||
    die "sysbench failed; see $WORK/profile-sysbench.log"
}

# memory: rwsplit's VmRSS idle, at its peak while 4 mysql clients each send 5 queries of 20 MiB (two
# protocol frames each), and 3 s after they finished; printed as a markdown table.
memory() {
  start_proxy
  local query="$WORK/big-query.sql" rss_log="$WORK/rss.log"
  rss() { awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status"; }
  mb() { echo "$(( $1 / 1024 )) MB"; }
  { printf "SELECT LENGTH('"; head -c $((20 * 1024 * 1024)) /dev/zero | tr '\0' x; printf "');\n"; } >"$query"
  point_selects "$PROXY_PORT" 4 2000
  sleep 2
  local idle
  idle=$(rss)
  (while kill -0 "$PROXY_PID" 2>/dev/null; do rss >>"$rss_log"; sleep 0.1; done) &
  local sampler=$! pids=() c
  for c in 1 2 3 4; do
    (for _ in 1 2 3 4 5; do
      mysql -h127.0.0.1 -P"$PROXY_PORT" -uapp -papp --max-allowed-packet=64M -N -B <"$query" >/dev/null || exit 1
    done) &
    pids+=($!)
  done
  for c in "${pids[@]}"; do wait "$c" || die "a 20 MiB query through rwsplit failed; see $WORK/rwsplit.log"; done
  sleep 3
  local after peak
  after=$(rss)
  kill "$sampler" 2>/dev/null || true
  peak=$(sort -n "$rss_log" | tail -1)
  stop_proxy
  echo "| rwsplit VmRSS | idle (after 2,000 point selects) | peak (4 clients x 5 queries of 20 MiB) | 3 s after |"
  echo "|---|---|---|---|"
  echo "| $(git rev-parse --short HEAD) | $(mb "$idle") | $(mb "$peak") | $(mb "$after") |"
}

# fairness: latency of point selects from 8 clients while one client sends 16 MiB queries and one reads
# 16 MiB results (benches/fairness.rs), directly against the primary and through rwsplit, each also without
# the big clients; printed as a markdown table.
fairness() {
  start_proxy
  local exe
  exe=$(bench_exe fairness)
  [[ -x $exe ]] || die "could not build benches/fairness.rs"
  echo "| target | big clients | small queries/s | p50 ms | p99 ms | p99.9 ms | max ms | 16 MiB packets moved in 13 s |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  local target port big out
  for target in direct proxy; do
    port=$RWSPLIT_PRIMARY_PORT
    [[ $target == proxy ]] && port=$PROXY_PORT
    for big in 0 1; do
      local big_pid="" moved=0
      if [[ $big == 1 ]]; then
        # The big clients run in a process of their own, as another application would.
        FAIRNESS_PORT=$port FAIRNESS_SMALL=0 FAIRNESS_SECS=13 "$exe" >"$WORK/fairness-big.out" 2>>"$WORK/fairness.log" &
        big_pid=$!
        sleep 2
      fi
      out=$(FAIRNESS_PORT=$port FAIRNESS_BIG=0 FAIRNESS_BIG_RESULTS=0 FAIRNESS_TABLES=$TABLES FAIRNESS_ROWS=$TABLE_SIZE \
        "$exe" 2>>"$WORK/fairness.log") || die "benches/fairness failed against $target; see $WORK/fairness.log"
      if [[ -n $big_pid ]]; then
        wait "$big_pid" || die "the big clients failed against $target; see $WORK/fairness.log"
        moved=$(awk -F= '$1 == "big_packets" { print $2 }' "$WORK/fairness-big.out")
      fi
      get() { awk -F= -v k="$1" '$1 == k { print $2 }' <<<"$out"; }
      ms() { awk -v u="$(get "$1")" 'BEGIN { printf "%.1f", u / 1000 }'; }
      echo "| $target | $([[ $big == 1 ]] && echo "1 sending + 1 reading" || echo none) | $(get qps) | $(ms p50_us) | $(ms p99_us) | $(ms p999_us) | $(ms max_us) | $moved |"
    done
  done
  stop_proxy
}

profile() {
  local n=$PROFILE_QUERIES
  has valgrind && has callgrind_control && has callgrind_annotate || die "profile needs valgrind (apt-get install valgrind)"
  has strace || die "profile needs strace (apt-get install strace)"
  # 1. User-space instructions per query under callgrind: 4 clients, counted after a warm-up.
  start_proxy valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no
  point_selects "$PROXY_PORT" 4 2000
  callgrind_control -z "$PROXY_PID" >/dev/null
  point_selects "$PROXY_PORT" 4 "$n"
  callgrind_control -d "$PROXY_PID" >/dev/null
  stop_proxy
  local dump total
  dump=$(ls -t "$WORK"/callgrind.out* | grep -v '\.out$' | head -1)
  [[ -n $dump ]] || dump="$WORK/callgrind.out"
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }')
  [[ -n $total ]] || die "no callgrind totals in $dump"
  callgrind_annotate --inclusive=yes "$dump" >"$WORK/callgrind-inclusive.txt" 2>/dev/null || true
  # 2. System calls per query under strace -c: 8 clients, twice as many queries.
  start_proxy
  point_selects "$PROXY_PORT" 8 2000
  local tids
  tids=$(ls "/proc/$PROXY_PID/task" | paste -sd, -)
  strace -c -f -p "$tids" -o "$WORK/strace.txt" &
  local strace_pid=$!
  sleep 1 # strace attaches to every thread
  point_selects "$PROXY_PORT" 8 $((2 * n))
  kill -INT "$strace_pid" 2>/dev/null || true
  wait "$strace_pid" 2>/dev/null || true
  stop_proxy
  {
    local built="commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty')"
    [[ -n ${RWSPLIT_BENCH_BINARY:-} ]] && built="given binary"
    echo "# rwsplit per-query profile $STAMP ($PROXY_BIN, $built)"
    echo
    echo "oltp_point_select, text protocol, reads to the replicas. Counts include the clients' logins (4 and 8)."
    echo
    echo "| measure | per query |"
    echo "|---|---:|"
    echo "| user-space instructions (callgrind, $n queries from 4 clients) | $(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }') |"
    awk -v n=$((2 * n)) '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" && $4 / n >= 0.005 {
        printf "| %s (strace, %d queries from 8 clients) | %.2f%s |\n", $NF, n, $4 / n, ($5 ~ /^[0-9]+$/ && $5 > 0) ? sprintf(" (%.2f failing)", $5 / n) : "" }' \
      "$WORK/strace.txt"
    echo
    echo "Inclusive instruction counts by function: $WORK/callgrind-inclusive.txt; raw: $dump, $WORK/strace.txt"
  } >"$OUT_DIR/profile-$STAMP.md"
  cat "$OUT_DIR/profile-$STAMP.md"
}

main() {
  mkdir -p "$WORK"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  log "results in $WORK"
  scripts/cluster.sh up >&2
  set -a
  eval "$(scripts/cluster.sh env)"
  set +a
  ensure_sysbench
  if [[ -z ${RWSPLIT_BENCH_BINARY:-} ]]; then
    log "cargo build --release"
    cargo build --release >&2
  fi
  if [[ ${1:-} == profile ]]; then
    prepare_tables
    profile
    return
  fi
  if [[ ${1:-} == memory ]]; then
    prepare_tables
    memory
    return
  fi
  if [[ ${1:-} == fairness ]]; then
    prepare_tables
    fairness
    return
  fi
  start_proxy
  [[ $RELAY_BASELINE == 1 ]] && start_relay
  prepare_tables
  : >"$RUNS_TSV"
  skipped sysbench || run_matrix
  stop_relay
  skipped scale || run_scale
  stop_proxy
  {
    echo "# rwsplit benchmark $STAMP"
    echo
    machine_header
    echo
    echo "direct = the primary; proxy = rwsplit (reads outside transactions go to the 2 replicas, so point selects"
    echo "run there, while sysbench's read_only/read_write use BEGIN/COMMIT and stay on the primary); replica ="
    echo "one replica directly; relay = a bare tokio TCP relay to the primary (benches/relay.rs), the floor for any"
    echo "user-space proxy. QPS and latencies are medians over the runs; p50/p95 from sysbench's histogram."
    echo "CPU µs/query = (utime+stime) of rwsplit (or the relay) / queries. on replicas = share of statements the"
    echo "nodes counted on replicas."
    echo "other load = CPU time not charged to sysbench, rwsplit or MariaDB (other processes, unattributed softirq work and"
    echo "hypervisor steal), as a share of all CPUs."
    echo
    if [[ -s $RUNS_TSV ]]; then report_sysbench; else echo "(sysbench phase skipped)"; fi
    echo
    echo "## Connection scale"
    echo
    if skipped scale; then echo "(skipped)"; else report_scale; fi
    echo
    echo "Raw runs: $RUNS_TSV; logs: $WORK"
  } >"$RESULT_MD"
  cat "$RESULT_MD"
  log "wrote $RESULT_MD"
  log "the cluster keeps running; stop it with:" \
    "RWSPLIT_CLUSTER_DIR=$RWSPLIT_CLUSTER_DIR RWSPLIT_CLUSTER_PORT_BASE=$RWSPLIT_CLUSTER_PORT_BASE scripts/cluster.sh down"
}

main "$@"
