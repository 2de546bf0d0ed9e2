#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against the Kubernetes JSON schemas, offline: the PyPI
# package kubernetes-validate ships the schemas of every Kubernetes version inside it. Installed
# into a virtualenv under ${TMPDIR:-/tmp} when missing. The ServiceMonitor (a CRD) is checked for
# YAML syntax only. Exit 0 only when every manifest passed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TMPDIR:-/tmp}/rwsplit-validate-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
files=()
for f in deploy/kubernetes/*.yaml; do
  case "$f" in */kustomization.yaml | */servicemonitor.yaml) ;; *) files+=("$f") ;; esac
done
"$venv/bin/kubernetes-validate" --strict --no-warn -k "${KUBERNETES_VERSION:-1.30}" "${files[@]}"
"$venv/bin/python" -c 'import sys, yaml; [list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]]' \
  deploy/kubernetes/kustomization.yaml deploy/kubernetes/servicemonitor.yaml
echo "validate-manifests: ${#files[@]} manifests valid"
