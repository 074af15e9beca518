#!/usr/bin/env bash
# Installs the real SIP peers and servers the interop tests run against, from Debian's archive.
# Does nothing when they are all there already.
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v sipsak >/dev/null || need+=(sipsak)
command -v baresip >/dev/null || need+=(baresip-core)
command -v kamailio >/dev/null || need+=(kamailio)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Helm is not in Debian; the chart tests use `helm` when it is on PATH, else Helm's Go engine
# from PyPI's helm-python-sdk.
if ! command -v helm >/dev/null && ! python3 -c "import helm_python" 2>/dev/null; then
  echo "installing: helm-python-sdk (PyPI)"
  python3 -m pip install -q helm-python-sdk
fi
