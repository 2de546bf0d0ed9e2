#!/usr/bin/env bash
# Makes the demo's TLS material with the openssl CLI, once: a throwaway CA, a server certificate it signed
# (for localhost and 127.0.0.1; used by rwsplit towards clients and by the MariaDB nodes of scripts/cluster.sh)
# and an RSA key pair for caching_sha2_password. Files that exist are kept, so running it again is cheap.
#
#   scripts/certs.sh [DIR]     default DIR: certs/ at the repo root (git-ignored; config/demo.toml points there)
#
#   DIR/ca.pem                 CA certificate: clients and tls.backend_ca verify with it
#   DIR/ca-key.pem             CA private key
#   DIR/server-cert.pem        server certificate, SAN DNS:localhost, IP:127.0.0.1, valid 10 years
#   DIR/server-key.pem         its private key
#   DIR/rsa-private.pem        RSA key of caching_sha2_password (tls.rsa_private_key)
#   DIR/rsa-public.pem         its public half (e.g. mysql --server-public-key-path)
#
# Demo material only: the keys are unencrypted and the CA is trusted by nobody else.
set -euo pipefail

readonly DIR="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/certs}"

log() { printf 'certs: %s\n' "$*" >&2; }

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  log "installing openssl with apt-get"
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 openssl)
  as_root "${install[@]}" >/dev/null || { as_root apt-get update >/dev/null && as_root "${install[@]}" >/dev/null; }
}

files=(ca.pem ca-key.pem server-cert.pem server-key.pem rsa-private.pem rsa-public.pem)
missing=0
for f in "${files[@]}"; do
  [[ -s $DIR/$f ]] || missing=1
done
((missing)) || exit 0

ensure_openssl
mkdir -p "$DIR"
# Tests may run this from several processes at once: one generates, the others wait and find the files.
exec 9>"$DIR/.lock"
flock -w 120 9 || {
  log "error: another scripts/certs.sh holds $DIR/.lock"
  exit 1
}
missing=0
for f in "${files[@]}"; do
  [[ -s $DIR/$f ]] || missing=1
done
((missing)) || exit 0
# Built in a private directory and moved in file by file, so a concurrent reader sees whole files only
# and two concurrent runs cannot mix a certificate with another run's key.
tmp=$(mktemp -d "$DIR/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rwsplit demo CA" \
  -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/server-key.pem" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
  -days 3650 -extfile "$tmp/ext.cnf" -out "$tmp/server-cert.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa-private.pem" 2>/dev/null
openssl pkey -in "$tmp/rsa-private.pem" -pubout -out "$tmp/rsa-public.pem" 2>/dev/null
chmod 600 "$tmp"/*key*.pem "$tmp/rsa-private.pem"

# The set belongs together, so all of it is replaced (this only happens on a first or partial run).
for f in ca-key.pem ca.pem server-key.pem server-cert.pem rsa-private.pem rsa-public.pem; do
  mv -f "$tmp/$f" "$DIR/$f"
done
log "wrote ${files[*]} to $DIR"
