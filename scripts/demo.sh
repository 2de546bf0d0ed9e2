#!/usr/bin/env bash
# Runs the proxy in front of the local MariaDB cluster: starts scripts/cluster.sh (primary 13306, replicas
# 13307 and 13308, as config/demo.toml expects), builds the release binary and runs it in the foreground.
# Extra arguments are passed to rwsplit. Ctrl-C stops the proxy; the cluster keeps running
# (scripts/cluster.sh down stops it, scripts/cluster.sh failover kills the primary to watch the proxy react).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly CONFIG=config/demo.toml

section() { printf '\n==> %s\n' "$*"; }

if [[ ${RWSPLIT_CLUSTER_PORT_BASE:-13306} != 13306 ]]; then
  echo "warning: RWSPLIT_CLUSTER_PORT_BASE=$RWSPLIT_CLUSTER_PORT_BASE but $CONFIG expects backends on 13306-13308" >&2
fi
[[ -f $CONFIG ]] || {
  echo "demo.sh: error: $CONFIG not found" >&2
  exit 1
}
if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

section "TLS material (certs/, see scripts/certs.sh)"
scripts/certs.sh

section "starting the MariaDB cluster"
scripts/cluster.sh up

section "cargo build --release"
cargo build --release

section "rwsplit --config $CONFIG"
cat <<EOF
Connect through the proxy with:

    mysql -h127.0.0.1 -P6033 -uapp -papp
    mysql -h127.0.0.1 -P6033 -uapp -papp --ssl --ssl-ca=certs/ca.pem        (TLS; \\s shows the cipher)
    mysql -h127.0.0.1 -P6033 -uapp_sha2 -papp --default-auth=caching_sha2_password --ssl
                                                            (caching_sha2_password, same backend account)

Reads outside transactions go to the replicas (SELECT @@port shows which), writes to the primary.
The admin and HTTP listeners are in the [listen] table of $CONFIG. Stop with Ctrl-C.

EOF
exec target/release/rwsplit --config "$CONFIG" "$@"
