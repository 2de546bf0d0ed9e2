#!/usr/bin/env bash
# Smoke test of the container path: image, compose stack, reads/writes/transaction through the
# containerised proxy, primary outage and recovery. Exit 0 only when every step passed.
#
# No image registry is needed: three base images are built with debootstrap from Debian's apt
# mirror and `docker import`ed, each cached once built:
#   rwsplit-base:bookworm        minbase + MariaDB server and client (the database containers)
#   rwsplit-runtime:bookworm     minbase + CA certificates (the proxy image's runtime, kept small)
#   rwsplit-prometheus:bookworm  minbase + Debian's prometheus (the compose monitoring profile)
# RWSPLIT_DOCKER_REBUILD=1 builds them again. The rwsplit binary is built on the host (cargo build --release) and copied into the image's
# runtime-prebuilt stage. Grafana has no Debian package and no registry is reachable, so the
# grafana service of the monitoring profile is not started here. Everything runs on the compose
# bridge network; ports are published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
project=rwsplit-smoke-$$
base_image=rwsplit-base:bookworm
runtime_image=rwsplit-runtime:bookworm
prometheus_image=rwsplit-prometheus:bookworm
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

# 3. Base images, cached.
# build_base IMAGE PACKAGES [docker import --change ...]: a Debian bookworm minbase with PACKAGES.
build_base() {
  local name=$1 packages=$2; shift 2
  if [ -z "${RWSPLIT_DOCKER_REBUILD:-}" ] && docker image inspect "$name" >/dev/null 2>&1; then return 0; fi
  need_root
  step "building $name with debootstrap"
  local work
  work=$(mktemp -d)
  debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" http://deb.debian.org/debian
  # Package lists, caches, documentation and translations are not needed at run time.
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb \
    "$work/rootfs/var/lib/mysql/"* \
    "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/info/"* \
    "$work/rootfs/usr/share/locale/"*
  tar -C "$work/rootfs" -c . | docker import "$@" - "$name"
  rm -rf "$work"
}
build_base "$base_image" ca-certificates,mariadb-server,mariadb-client,curl
build_base "$runtime_image" ca-certificates
build_base "$prometheus_image" prometheus --change 'WORKDIR /prometheus' \
  --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
  --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'

# 4. rwsplit image from the host-built binary.
step "building the release binary and the image"
cargo build --release --bin rwsplit
bin="${CARGO_TARGET_DIR:-$root/target}/release/rwsplit"
# The release profile keeps debug info for profiling; the image gets the binary without it.
strip -o "$root/docker/rwsplit-bin" "$bin"
docker build -q -f docker/Dockerfile --target runtime-prebuilt --build-arg RUNTIME_IMAGE="$runtime_image" -t "$image" . >/dev/null
mb() { echo $(( $(docker image inspect -f "{{.Size}}" "$1") / 1000000 )); }
echo "image size: $(mb "$image") MB (runtime base $(mb "$runtime_image") MB, binary $(( $(stat -c %s "$root/docker/rwsplit-bin") / 1000000 )) MB)"

# 5. Stack.
export DB_IMAGE=$base_image RWSPLIT_IMAGE=$image RUNTIME_IMAGE=$runtime_image PROMETHEUS_IMAGE=$prometheus_image
step "starting the compose stack (with Prometheus of the monitoring profile)"
compose up -d --no-build
compose --profile monitoring up -d --no-build prometheus
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

# 6b. Prometheus scrapes the proxy and sees its traffic.
step "Prometheus scrapes rwsplit"
promq() { curl -fsS --get http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$1"; }
scraped() { promq 'sum(rwsplit_queries_total)' | grep -Eq '"value":\[[0-9.]+,"[1-9][0-9]*"\]'; }
eventually 90 scraped || { promq 'up'; compose logs --tail=20 prometheus; fail "Prometheus has no rwsplit traffic"; }
echo "Prometheus sees $(promq 'sum(rwsplit_queries_total)' | grep -Eo '"[0-9]+"\]' | tr -d '"]') statements"

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
