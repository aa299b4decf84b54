#!/usr/bin/env bash
# Checks every Kubernetes manifest under deploy/k8s against the Kubernetes
# API schemas, offline and strict (unknown fields are errors), with
# kubernetes-validate (PyPI; it ships the schemas). Also checks that the
# kustomization lists exactly the manifest files present.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
files=$(ls *.yaml | grep -v '^kustomization.yaml$')
listed=$(sed -n 's/^  - \(.*\.yaml\)$/\1/p' kustomization.yaml | sort)
if [ "$(echo "$files" | sort)" != "$listed" ]; then
  echo "kustomization.yaml resources do not match the manifests here:" >&2
  diff <(echo "$files" | sort) <(echo "$listed") >&2 || true
  exit 1
fi
# shellcheck disable=SC2086
kubernetes-validate --strict --quiet -k "$K8S_VERSION" $files
echo "k8s manifests valid against Kubernetes $K8S_VERSION: $(echo $files | wc -w) files"
