#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for tests and for trying Switchboard on a laptop:
# etcd, kube-apiserver (RBAC, service-account tokens) and kube-controller-manager (garbage
# collection, namespaces, service accounts). No kubelet, so no pods.
#
#   scripts/controlplane.sh up DIR [--watch PID]   start; the last line is KUBECONFIG=DIR/kubeconfig
#   scripts/controlplane.sh down DIR               stop what `up DIR` started
#   scripts/controlplane.sh stop DIR COMPONENT     stop one component (etcd, kube-apiserver,
#                                                   kube-controller-manager)
#   scripts/controlplane.sh start DIR COMPONENT    start it again, with the same flags
#   scripts/controlplane.sh restart DIR COMPONENT  both
#   scripts/controlplane.sh build                  only build (or find) the binaries (kubectl too);
#                                                   prints their folder
#   scripts/controlplane.sh built                  exits 0 when the binaries are built already
#
# The binaries are built from Go modules (scripts/controlplane/go.mod: k8s.io/kubernetes and the
# etcd its release pins) on first use and cached outside the clone, keyed by version, in
# ${SWITCHBOARD_CONTROLPLANE_CACHE:-/var/tmp/switchboard-controlplane}/<version>/bin; a later run
# builds nothing. Flags follow controller-runtime's envtest: a self-signed CA, HTTPS on free
# loopback ports, an admin client certificate (system:masters), --authorization-mode=RBAC and
# service-account signing keys, so `kubectl create token` works.
# With --watch PID everything is stopped once process PID has gone (a test binary that exits
# without running destructors leaves nothing behind), and so is every process whose pid a test
# wrote into DIR/procs/NAME.pid; then DIR itself (etcd's data and the logs, ~60 MB) is removed,
# unless SWITCHBOARD_KEEP_CONTROLPLANE is set (to read the logs after a run).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/controlplane"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$module/go.mod")"
cache="${SWITCHBOARD_CONTROLPLANE_CACHE:-/var/tmp/switchboard-controlplane}"
bin="$cache/$k8s_version/bin"
components=(etcd kube-apiserver kube-controller-manager)
# kubectl of the same release is built beside them: the tests drive the cluster with it, so no
# kubectl needs to be installed and client and server versions match.
binaries=("${components[@]}" kubectl)

die() { echo "controlplane: $*" >&2; exit 1; }

built() {
  local c
  for c in "${binaries[@]}"; do [ -x "$bin/$c" ] || return 1; done
}

build() {
  built && return 0
  command -v go >/dev/null || die "Go is needed to build the control plane once (go not found on PATH)"
  echo "controlplane: building etcd, kube-apiserver, kube-controller-manager and kubectl $k8s_version into $bin (once; minutes)" >&2
  mkdir -p "$bin"
  local tmp
  tmp="$(mktemp -d "$cache/build.XXXXXX")"
  # The version is stamped as Kubernetes' own build does, so clients (kubectl version, kube-rs)
  # read v1.34.4 rather than v0.0.0-master.
  local v="${k8s_version#v}" pkg ldflags="-s"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=${v%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(echo "$v" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  done
  (cd "$module" && GOFLAGS=-mod=readonly go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl ./etcd) >&2
  # Renamed into place only when all three built, so a broken build is never taken for a cache.
  for c in "${binaries[@]}"; do mv -f "$tmp/$c" "$bin/$c"; done
  rmdir "$tmp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# certs DIR: CA, serving certificate for 127.0.0.1/localhost, admin client, SA signing key.
certs() {
  local d="$1/pki"
  mkdir -p "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.crt" -days 30 \
    -subj /CN=switchboard-test-ca 2>/dev/null
  issue() { # name subject extensions
    openssl req "${ec[@]}" -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" > "$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 30 -out "$d/$1.crt" -extfile "$d/$1.ext" 2>/dev/null
  }
  issue apiserver /CN=kube-apiserver \
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
  issue admin "/O=system:masters/CN=switchboard-admin" "extendedKeyUsage=clientAuth"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
  openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

kubeconfig() { # DIR PORT
  local d="$1/pki"
  cat > "$1/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: switchboard-test
  cluster:
    server: https://127.0.0.1:$2
    certificate-authority: $d/ca.crt
users:
- name: admin
  user:
    client-certificate: $d/admin.crt
    client-key: $d/admin.key
contexts:
- name: switchboard-test
  context: {cluster: switchboard-test, user: admin, namespace: default}
current-context: switchboard-test
EOF
}

# args DIR COMPONENT: the component's command line, one argument a line, saved for `restart`.
write_args() {
  local dir="$1" c="$2" d="$1/pki"
  local etcd_port api_port
  etcd_port="$(cat "$dir/etcd.port")"
  api_port="$(cat "$dir/apiserver.port")"
  case "$c" in
    etcd) printf '%s\n' \
      --name=switchboard-test --data-dir="$dir/etcd-data" \
      --listen-client-urls="http://127.0.0.1:$etcd_port" \
      --advertise-client-urls="http://127.0.0.1:$etcd_port" \
      --listen-peer-urls="http://127.0.0.1:$(cat "$dir/etcd-peer.port")" \
      --unsafe-no-fsync=true --log-level=warn ;;
    kube-apiserver) printf '%s\n' \
      --etcd-servers="http://127.0.0.1:$etcd_port" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
      --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
      --client-ca-file="$d/ca.crt" \
      --authorization-mode=RBAC \
      --service-account-key-file="$d/sa.pub" \
      --service-account-signing-key-file="$d/sa.key" \
      --service-account-issuer="https://127.0.0.1:$api_port" \
      --service-cluster-ip-range=10.96.0.0/24 \
      --allow-privileged=true \
      --disable-admission-plugins=ServiceAccount \
      --v=1 ;;
    kube-controller-manager) printf '%s\n' \
      --kubeconfig="$dir/kubeconfig" \
      --authentication-kubeconfig="$dir/kubeconfig" --authorization-kubeconfig="$dir/kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$(cat "$dir/controller-manager.port")" \
      --leader-elect=false \
      --controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,endpointslice \
      --service-account-private-key-file="$d/sa.key" --root-ca-file="$d/ca.crt" \
      --use-service-account-credentials=false --concurrent-gc-syncs=5 --v=1 ;;
  esac > "$dir/$c.args"
}

start() { # DIR COMPONENT
  local dir="$1" c="$2"
  mapfile -t args < "$dir/$c.args"
  setsid "$bin/$c" "${args[@]}" >> "$dir/$c.log" 2>&1 < /dev/null &
  echo $! > "$dir/$c.pid"
}

stop() { # DIR COMPONENT
  local pidfile="$1/$2.pid" pid i
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# wait_for DIR WHAT SECONDS CHECK...: runs CHECK until it succeeds; on timeout shows the logs.
wait_for() {
  local dir="$1" what="$2" deadline=$((SECONDS + $3)); shift 3
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$dir"/*.log >&2 || true
      die "$what not ready after ${deadline}s"
    fi
    sleep 0.2
  done
}

healthy() { # DIR COMPONENT
  local dir="$1" c="$2" pid
  pid="$(cat "$dir/$c.pid")"
  kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/$c.log" >&2; die "$c exited"; }
  case "$c" in
    etcd) curl -sf "http://127.0.0.1:$(cat "$dir/etcd.port")/health" ;;
    kube-apiserver) curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
        --key "$dir/pki/admin.key" "https://127.0.0.1:$(cat "$dir/apiserver.port")/readyz" ;;
    kube-controller-manager) curl -sfk "https://127.0.0.1:$(cat "$dir/controller-manager.port")/healthz" ;;
  esac
}

start_ready() { # DIR COMPONENT
  start "$1" "$2"
  wait_for "$1" "$2" 60 healthy "$1" "$2"
}

watchdog() { # DIR PID
  local dir="$1" pid="$2"
  ( trap '' HUP
    while kill -0 "$pid" 2>/dev/null && [ -f "$dir/kube-apiserver.args" ]; do sleep 1; done
    "$here/controlplane.sh" down "$dir" >/dev/null 2>&1
    [ -n "${SWITCHBOARD_KEEP_CONTROLPLANE:-}" ] || rm -rf "$dir" ) </dev/null >/dev/null 2>&1 &
  disown
}

up() {
  local dir="$1" watch="${2:-}"
  command -v openssl >/dev/null || die "openssl is needed"
  command -v curl >/dev/null || die "curl is needed"
  build
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ -f "$dir/kube-apiserver.pid" ] && die "$dir already runs a control plane (scripts/controlplane.sh down $dir)"
  free_port > "$dir/etcd.port"; free_port > "$dir/etcd-peer.port"
  free_port > "$dir/apiserver.port"; free_port > "$dir/controller-manager.port"
  certs "$dir"
  kubeconfig "$dir" "$(cat "$dir/apiserver.port")"
  local c
  for c in "${components[@]}"; do write_args "$dir" "$c"; done
  [ -n "$watch" ] && watchdog "$dir" "$watch"
  for c in "${components[@]}"; do start_ready "$dir" "$c"; done
  echo "KUBECONFIG=$dir/kubeconfig"
}

down() {
  local dir="$1" c f
  # Processes a test started against this control plane (operator, registrar) go first.
  for f in "$dir"/procs/*.pid; do [ -f "$f" ] && stop "$dir/procs" "$(basename "$f" .pid)"; done
  for c in kube-controller-manager kube-apiserver etcd; do stop "$dir" "$c"; done
  rm -f "$dir"/*.args
}

case "${1:-}" in
  up) [ $# -ge 2 ] || die "usage: $0 up DIR [--watch PID]"
      if [ "${3:-}" = --watch ]; then up "$2" "${4:?--watch needs a PID}"; else up "$2"; fi ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  stop) [ $# -eq 3 ] || die "usage: $0 stop DIR COMPONENT"; stop "$2" "$3" ;;
  start) [ $# -eq 3 ] || die "usage: $0 start DIR COMPONENT"; start_ready "$2" "$3" ;;
  restart) [ $# -eq 3 ] || die "usage: $0 restart DIR COMPONENT"
      stop "$2" "$3"; start_ready "$2" "$3" ;;
  build) build; echo "$bin" ;;
  built) built ;;
  *) die "usage: $0 up DIR [--watch PID] | down DIR | stop|start|restart DIR COMPONENT | build | built" ;;
esac
