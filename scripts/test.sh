#!/usr/bin/env bash
# The whole test suite: the README's test command, and what CI runs.
# Installs the SIP peers the interop tests need (sipp, sipsak, baresip, linphonec, kamailio,
# redis-server), the browser softphone test's chromium, node and npm packages, and, without a
# `helm` binary, Helm's SDK into a virtual environment (SWITCHBOARD_VENV), then
# checks formatting, lints, the generated CRDs, builds the Kubernetes control plane the
# control-plane tests run against (scripts/controlplane.sh; Go, once), and runs every test of
# the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
# The Python the Helm chart tests run Helm's SDK with, when there is no `helm` binary: the
# virtual environment install-test-deps.sh put helm-python-sdk into (tests/tests/helm.rs).
venv=${SWITCHBOARD_VENV:-/var/tmp/switchboard-venv}
if [ -z "${SWITCHBOARD_PYTHON:-}" ] && [ -x "$venv/bin/python" ]; then
  export SWITCHBOARD_PYTHON="$venv/bin/python"
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== generated CRDs are fresh"
cargo run -q --locked -p switchboard-crds --bin crdgen -- --check

echo "== container images"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  for target in operator registrar provisioning; do
    docker build --target "$target" -t "switchboard-$target:test" .
  done
else
  echo "SKIP image builds: no Docker engine here (docker info fails or docker is missing);"
  echo "     the GitHub workflow builds them (.github/workflows/ci.yml, job images)"
fi

echo "== the Kubernetes control plane (built from Go modules once, then cached)"
if command -v go >/dev/null || scripts/controlplane.sh built; then
  scripts/controlplane.sh build
elif [ -n "${SWITCHBOARD_REQUIRE_CONTROLPLANE:-}" ]; then
  echo "Go is missing and no control plane is cached, but SWITCHBOARD_REQUIRE_CONTROLPLANE is set" >&2
  exit 1
else
  echo "SKIP: no Go toolchain; the control-plane tests will say they skip"
fi

echo "== cargo build (the binaries the control-plane tests run as processes)"
cargo build --workspace --bins --locked

echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
