#!/usr/bin/env bash
# Smoke test of the container path: image, compose stack, reads/writes/transaction through the
# containerised proxy, primary outage and recovery. Exit 0 only when every step passed.
#
# No image registry is needed: the base image (Debian bookworm minbase with MariaDB, its client
# and CA certificates) is built with debootstrap from Debian's apt mirror and `docker import`ed,
# cached as rwsplit-base:bookworm; the rwsplit binary is built on the host (cargo build --release)
# and copied into the image's runtime-prebuilt stage. Everything runs on the compose bridge
# network; ports are published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
project=rwsplit-smoke-$$
base_image=rwsplit-base:bookworm
image=rwsplit:smoke
step() { echo "== docker-test: $*"; }
fail() { echo "docker-test: FAILED: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || fail "needs root (apt-get, dockerd, debootstrap)"; }

# 1. Tools.
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v debootstrap >/dev/null; then
  need_root
  step "installing docker.io, docker-compose, debootstrap from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io docker-compose debootstrap iptables
fi
compose() { docker-compose -p "$project" -f "$root/docker/compose.yaml" "$@"; }

# 2. Daemon.
started_dockerd=""
if ! docker info >/dev/null 2>&1; then
  need_root
  step "starting dockerd"
  dockerd >/tmp/rwsplit-docker-test-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start (see /tmp/rwsplit-docker-test-dockerd.log)"
fi

cleanup() {
  status=$?
  step "tearing down"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -f "$root/docker/rwsplit-bin"
  if [ -n "$started_dockerd" ]; then kill "$started_dockerd" 2>/dev/null || true; fi
  if [ $status -eq 0 ]; then echo "docker-test: OK"; else echo "docker-test: FAILED (exit $status)" >&2; fi
}
trap cleanup EXIT

# 3. Base image, cached.
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  need_root
  step "building $base_image with debootstrap"
  work=$(mktemp -d)
  debootstrap --variant=minbase --include=ca-certificates,mariadb-server,mariadb-client,curl \
    bookworm "$work/rootfs" http://deb.debian.org/debian
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/lib/mysql/"*
  tar -C "$work/rootfs" -c . | docker import - "$base_image"
  rm -rf "$work"
fi

# 4. rwsplit image from the host-built binary.
step "building the release binary and the image"
cargo build --release --bin rwsplit
bin="${CARGO_TARGET_DIR:-$root/target}/release/rwsplit"
# The release profile keeps debug info for profiling; the image gets the binary without it.
strip -o "$root/docker/rwsplit-bin" "$bin"
docker build -q -f docker/Dockerfile --target runtime-prebuilt --build-arg RUNTIME_IMAGE="$base_image" -t "$image" . >/dev/null
echo "image size: $(docker image inspect -f "{{.Size}}" "$image") bytes (base $(docker image inspect -f "{{.Size}}" "$base_image"))"

# 5. Stack.
export DB_IMAGE=$base_image RWSPLIT_IMAGE=$image RUNTIME_IMAGE=$base_image
step "starting the compose stack"
compose up -d --no-build
sql() { mysql -h127.0.0.1 -P6033 -uapp -papp --connect-timeout=3 -N -B app -e "$1"; }
eventually() { # eventually SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 1; done
}
ready() { curl -fsS http://127.0.0.1:6070/ready; }
eventually 180 ready || { compose logs --tail=50; fail "proxy never became ready"; }
eventually 60 sql "SELECT 1" || fail "no query through the proxy"

# 6. Reads, writes, transaction.
step "reads, writes and a transaction through the proxy"
sql "CREATE TABLE IF NOT EXISTS smoke (id INT PRIMARY KEY, v VARCHAR(20))"
sql "INSERT INTO smoke VALUES (1, 'one')"
sql "BEGIN; INSERT INTO smoke VALUES (2, 'two'); UPDATE smoke SET v='uno' WHERE id=1; COMMIT"
replicated() { [ "$(sql "SELECT COUNT(*) FROM smoke WHERE v IN ('uno','two')")" = 2 ]; }
eventually 30 replicated || fail "rows not visible through the proxy"
served_by=$(sql "SELECT @@hostname")
echo "a read was served by $served_by"

# 7. Primary outage: the proxy reports it down, writes fail, recover when it returns.
step "stopping the primary"
compose stop primary
down() { curl -fsS http://127.0.0.1:6070/metrics | grep -Eq '^rwsplit_backend_up\{backend="primary"[^}]*\} 0'; }
eventually 60 down || { curl -sS http://127.0.0.1:6070/backends; fail "proxy did not report the primary down"; }
if sql "INSERT INTO smoke VALUES (3, 'three')" 2>/dev/null; then fail "write succeeded with the primary down"; fi
step "starting the primary again"
compose start primary
eventually 120 sql "INSERT INTO smoke VALUES (3, 'three')" || fail "writes did not resume after the primary returned"
step "all steps passed"
