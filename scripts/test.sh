#!/usr/bin/env bash
# The project's test command: installs what is missing, starts the MariaDB cluster of scripts/cluster.sh and
# runs the same checks as CI: cargo fmt --check, cargo clippy -D warnings, cargo test.
#
#   scripts/test.sh                    everything
#   scripts/test.sh routing -- --nocapture
#                                      extra arguments go to `cargo test`
#   KEEP_CLUSTER=1 scripts/test.sh     leave the cluster running afterwards
#
# The tests find the cluster through RWSPLIT_CLUSTER_DIR and RWSPLIT_CLUSTER_PORT_BASE (exported here, with
# the same defaults as scripts/cluster.sh) plus the RWSPLIT_* variables of `scripts/cluster.sh env`.
# A cluster that was already running when this script started is left running; only one started here is stopped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RWSPLIT_CLUSTER_DIR="${RWSPLIT_CLUSTER_DIR:-${TMPDIR:-/tmp}/rwsplit-cluster}"
export RWSPLIT_CLUSTER_PORT_BASE="${RWSPLIT_CLUSTER_PORT_BASE:-13306}"

section() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'test.sh: error: %s\n' "$*" >&2
  exit 1
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

has() { command -v "$1" >/dev/null 2>&1; }

# Debian packages for whatever is missing. Rust itself comes from rustup (rust-toolchain.toml pins the version).
# True while another apt or dpkg runs (pgrep matches at most 15 characters of a name: one per call).
apt_busy() {
  local name
  for name in apt apt-get dpkg unattended-upgr; do
    pgrep -x "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}

install_missing() {
  local pkgs=()
  has mariadbd || [[ -x /usr/sbin/mariadbd ]] || pkgs+=(mariadb-server)
  has mariadb || has mysql || pkgs+=(mariadb-client)
  has cc || pkgs+=(build-essential)
  has pkg-config || pkgs+=(pkg-config)
  # Real-client programs of tests/clients.rs: Go in GOPATH mode against Debian's driver source (offline),
  # and PyMySQL for Debian's /usr/bin/python3 (a pyenv python3 first on PATH does not see it).
  has go || [[ -x /usr/lib/go/bin/go ]] || pkgs+=(golang-go)
  [[ -d /usr/share/gocode/src/github.com/go-sql-driver/mysql ]] || pkgs+=(golang-github-go-sql-driver-mysql-dev)
  /usr/bin/python3 -c 'import pymysql' >/dev/null 2>&1 || pkgs+=(python3-pymysql)
  # C-API client of tests/compat.rs: libmariadb headers and mariadb_config.
  has mariadb_config || pkgs+=(libmariadb-dev)
  # node-mysql2 client of tests/node_client.rs: Node.js and npm (its packages come from npm's registry).
  has node || pkgs+=(nodejs)
  has npm || pkgs+=(npm)
  ((${#pkgs[@]})) || return 0

  section "installing ${pkgs[*]}"
  has apt-get || die "missing ${pkgs[*]} and apt-get is not available; install them by hand"
  # Another apt run (for instance an image build) may hold the dpkg lock; wait for it instead of failing.
  local waited=0
  while apt_busy && ((waited < 900)); do
    ((waited % 30 == 0)) && echo "waiting for a running apt/dpkg to finish"
    sleep 2
    waited=$((waited + 2))
  done
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 "${pkgs[@]}"
}

# The node client's locked dependencies (tests/clients/node/package-lock.json), installed when missing or
# when the lock changed since the last install (a copy of the lock marks the install).
install_node_client() {
  local dir=tests/clients/node
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json" 2>/dev/null && return 0
  section "installing the node client's packages (npm ci in $dir)"
  (cd "$dir" && npm ci --no-audit --no-fund && cp package-lock.json node_modules/.installed-lock.json)
}

ensure_cargo() {
  if ! has cargo && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  has cargo || die "cargo not found; install Rust with rustup (https://rustup.rs), then rerun scripts/test.sh"
}

# True when any node of the cluster in RWSPLIT_CLUSTER_DIR is running.
is_cluster_running() {
  local env_out
  env_out=$(scripts/cluster.sh env)
  grep -qE '^RWSPLIT_[A-Z0-9]+_PID=[0-9]+$' <<<"$env_out"
}

STARTED_CLUSTER=0

cleanup() {
  local rc=$?
  if ((STARTED_CLUSTER)) && [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    section "stopping the cluster (KEEP_CLUSTER=1 keeps it)"
    scripts/cluster.sh down || true
  fi
  if ((rc == 0)); then section "all checks passed"; else section "FAILED (exit $rc)"; fi
  exit "$rc"
}

main() {
  section "checking prerequisites"
  install_missing
  install_node_client
  ensure_cargo
  cargo --version

  section "starting the MariaDB cluster in $RWSPLIT_CLUSTER_DIR" \
    "(ports $RWSPLIT_CLUSTER_PORT_BASE-$((RWSPLIT_CLUSTER_PORT_BASE + 2)))"
  if is_cluster_running; then
    echo "a cluster is already running there; it is left running afterwards"
  else
    STARTED_CLUSTER=1
  fi
  # Set before `up` so a start that fails half-way is cleaned up too.
  trap cleanup EXIT
  scripts/cluster.sh up
  local cluster_env
  cluster_env=$(scripts/cluster.sh env)
  set -a
  eval "$cluster_env"
  set +a

  section "cargo fmt --check"
  cargo fmt --check

  section "cargo clippy --all-targets -- -D warnings"
  cargo clippy --all-targets -- -D warnings

  section "cargo test $*"
  cargo test "$@"

  # Only for the whole run: a filtered `scripts/test.sh NAME` stays a quick cargo test.
  if (($# == 0)); then
    section "Kubernetes manifests (scripts/validate-manifests.sh)"
    scripts/validate-manifests.sh

    section "container smoke test (scripts/docker-test.sh)"
    scripts/docker-test.sh
  fi
}

main "$@"
