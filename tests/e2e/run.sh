#!/usr/bin/env bash
# End-to-end test on a kind cluster:
#   kind cluster → images built and loaded → chart installed → examples applied →
#   a sipp phone registers through the registrar Service (NodePort on the kind node) →
#   the device shows Registered, `kubectl describe` lists its contact → /debug/bindings lists it
#   through `kubectl port-forward` (the pod's loopback) and nowhere else → unregistering
#   (Expires: 0) turns it Unregistered, registering again Registered → an invalid device
#   shows Accepted=False → the registrar scaled to 3 replicas keeps the phone registered,
#   and a refresh through the Service still succeeds.
#
# Needs: docker (with a reachable daemon), kind, helm, kubectl, sipp (package sip-tester), and
# network for base images. Where any is missing it prints why and exits 77 (skipped), unless
# E2E_REQUIRED=1 (as in CI), where missing prerequisites fail with exit 1.
#
# Environment:
#   E2E_CLUSTER      kind cluster name (default switchboard-e2e); created, and deleted at the end
#   E2E_KEEP=1       keep the cluster afterwards (for debugging)
#   E2E_REUSE=1      use an existing cluster of that name instead of creating one
#   E2E_IMAGE_TAG    image tag to build and load (default e2e)
#   E2E_SKIP_BUILD=1 do not build: the images ghcr.io/switchboard/switchboard-{operator,registrar}:TAG
#                    must exist in the local docker already (CI builds them in an earlier step)
#   E2E_TIMEOUT      seconds to wait for each condition (default 120)
#
# Exit codes: 0 passed, 1 failed, 77 skipped (prerequisites missing).

set -uo pipefail

SKIP=77
src="${BASH_SOURCE[0]}"
[ "${src#*/}" != "$src" ] || src="./$src"
here="$(cd "${src%/*}" && pwd)" # builtins only: this runs before the tools are checked
repo="$(cd "$here/../.." && pwd)"
cluster="${E2E_CLUSTER:-switchboard-e2e}"
tag="${E2E_IMAGE_TAG:-e2e}"
timeout="${E2E_TIMEOUT:-120}"
release=switchboard
ns=switchboard-system
app_ns=acme
node_port=30060
registry=ghcr.io/switchboard

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'e2e FAILED: %s\n' "$*" >&2
  diagnostics
  exit 1
}

# --- prerequisites: only shell builtins until every tool is known to exist --------------------
missing=()
for tool in docker kind helm kubectl sipp; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
skip_reason=""
if [ ${#missing[@]} -gt 0 ]; then
  skip_reason="missing tools: ${missing[*]} (install docker, kind, helm, kubectl and sipp; see README § End-to-end tests)"
elif ! docker info >/dev/null 2>&1; then
  skip_reason="docker is installed but its daemon is not reachable (docker info failed): the e2e test needs a running Docker engine"
fi
if [ -n "$skip_reason" ]; then
  if [ "${E2E_REQUIRED:-0}" = 1 ]; then
    echo "e2e FAILED (E2E_REQUIRED=1): $skip_reason" >&2
    exit 1
  fi
  echo "e2e SKIPPED: $skip_reason" >&2
  exit $SKIP
fi

diagnostics() {
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl cluster-info >/dev/null 2>&1 || return 0
  echo "---- diagnostics" >&2
  kubectl -n "$ns" get pods -o wide >&2 || true
  kubectl -n "$app_ns" get sipdevices,sites,callpatterns,sipregistrations >&2 || true
  kubectl -n "$app_ns" describe sipdevice lobby-phone >&2 || true
  kubectl -n "$ns" logs -l app.kubernetes.io/component=operator --tail=80 >&2 || true
  kubectl -n "$ns" logs -l app.kubernetes.io/component=registrar --tail=80 --prefix >&2 || true
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -30 >&2 || true
}

cleanup() {
  if [ "${E2E_KEEP:-0}" = 1 ] || [ "${E2E_REUSE:-0}" = 1 ]; then
    echo "keeping kind cluster $cluster (kind delete cluster --name $cluster)"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
work="$(mktemp -d)"
trap cleanup EXIT

# wait_for DESCRIPTION COMMAND...: retries COMMAND until it succeeds or $timeout passes.
wait_for() {
  local what="$1"
  shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for: $what"
    sleep 2
  done
  say "ok: $what"
}

device_field() { # device jsonpath
  kubectl -n "$app_ns" get sipdevice "$1" -o "jsonpath=$2" 2>/dev/null
}
registration_is() { [ "$(device_field "$1" '{.status.registration.state}')" = "$2" ]; }
# http_get PORT PATH: a plain HTTP/1.0 GET on 127.0.0.1 through bash's /dev/tcp (no curl).
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}

# --- cluster ------------------------------------------------------------------------------
if [ "${E2E_REUSE:-0}" = 1 ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing kind cluster $cluster"
else
  say "creating kind cluster $cluster"
  kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  kind create cluster --name "$cluster" --wait 120s || fail "kind create cluster"
fi
kubectl config use-context "kind-$cluster" >/dev/null || fail "no kubectl context kind-$cluster"

# --- images -------------------------------------------------------------------------------
for target in operator registrar; do
  image="$registry/switchboard-$target:$tag"
  if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
    say "building $image"
    DOCKER_BUILDKIT=1 docker build --target "$target" -t "$image" "$repo" || fail "docker build $target"
  fi
  kind load docker-image --name "$cluster" "$image" || fail "kind load $image"
done

# --- chart --------------------------------------------------------------------------------
say "installing the chart"
cat >"$work/values.yaml" <<EOF
operator:
  image: {repository: $registry/switchboard-operator, tag: "$tag", pullPolicy: Never}
  logJson: false
registrar:
  image: {repository: $registry/switchboard-registrar, tag: "$tag", pullPolicy: Never}
  logJson: false
  service:
    type: NodePort
    externalTrafficPolicy: Local
    nodePorts: {udp: $node_port, tcp: $node_port}
# Shared bindings, so the registrar can be scaled to 3 below (the in-chart Redis).
redis:
  enabled: true
EOF
helm upgrade --install "$release" "$repo/charts/switchboard" \
  --namespace "$ns" --create-namespace -f "$work/values.yaml" --wait --timeout 180s ||
  fail "helm install"
for crd in sites sipdevices callpatterns sipregistrations; do
  kubectl wait --for=condition=Established "crd/$crd.sip.switchboard.dev" --timeout=60s >/dev/null ||
    fail "CRD $crd not established"
  # Installed by the release's template, and left in place by `helm uninstall`.
  policy="$(kubectl get crd "$crd.sip.switchboard.dev" -o 'jsonpath={.metadata.annotations.helm\.sh/resource-policy}')"
  [ "$policy" = keep ] || fail "CRD $crd lacks helm.sh/resource-policy: keep (has '$policy')"
done

# --- examples -----------------------------------------------------------------------------
say "applying the examples (examples/gitops kustomization)"
kubectl kustomize --load-restrictor LoadRestrictionsNone "$repo/examples/gitops" >"$work/examples.yaml" ||
  fail "kustomize build examples/gitops"
kubectl apply -f "$work/examples.yaml" || fail "kubectl apply examples"
# sipp answers MD5 challenges only: the site offers the default, MD5 alone.

device=lobby-phone
wait_for "$device Accepted" kubectl -n "$app_ns" wait --for=condition=Accepted "sipdevice/$device" --timeout=5s
wait_for "$device credentials Secret" kubectl -n "$app_ns" get secret "$device-sip-credentials"
user="$(kubectl -n "$app_ns" get secret "$device-sip-credentials" -o jsonpath='{.data.username}' | base64 -d)"
password="$(kubectl -n "$app_ns" get secret "$device-sip-credentials" -o jsonpath='{.data.password}' | base64 -d)"
domain="$(kubectl -n "$app_ns" get site hq -o jsonpath='{.spec.domain}')"
[ -n "$user" ] && [ -n "$password" ] && [ -n "$domain" ] || fail "no credentials for $device"
wait_for "$device Ready (config published)" kubectl -n "$app_ns" wait --for=condition=Ready "sipdevice/$device" --timeout=5s

# --- a phone registers through the registrar Service ------------------------------------
node_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$cluster-control-plane")"
[ -n "$node_ip" ] || fail "no address for the kind node"
local_ip="$(ip -4 route get "$node_ip" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
[ -n "$local_ip" ] || local_ip=0.0.0.0

# phone EXPIRES: REGISTER (or unregister with 0) through the Service's NodePort, over UDP.
phone() {
  (cd "$work" && sipp "$node_ip:$node_port" -sf "$here/sipp/register.xml" -m 1 -t u1 \
    -i "$local_ip" -p 5070 -key user "$user" -key domain "$domain" -key expires "$1" \
    -au "$user" -ap "$password" -s "$user" -timeout 20 -timeout_error -nostdin -trace_err \
    >"$work/sipp.out" 2>&1)
}
# The registrar may take a moment to load the config that holds the new device.
deadline=$((SECONDS + timeout))
until phone 3600; do
  [ $SECONDS -lt $deadline ] || { cat "$work/sipp.out" >&2; fail "sipp REGISTER through $node_ip:$node_port"; }
  sleep 3
done
say "ok: sipp registered $user@$domain through the Service"

wait_for "$device status Registered" registration_is "$device" Registered
kubectl -n "$app_ns" get sipdevice "$device"
describe="$(kubectl -n "$app_ns" describe sipdevice "$device")"
grep -q "sip:$user@" <<<"$describe" || { echo "$describe"; fail "kubectl describe does not list the contact sip:$user@…"; }
say "ok: kubectl describe lists the contact"

# --- /debug/* on the pod's loopback only --------------------------------------------------
say "reading /debug/bindings through kubectl port-forward, and nowhere else"
kubectl -n "$ns" port-forward "deploy/$release-registrar" 19090:9090 19091:9091 >"$work/port-forward.log" 2>&1 &
forward=$!
wait_for "port-forward to the registrar" http_get 19090 /healthz
public="$(http_get 19090 /debug/bindings | head -1)"
bindings="$(http_get 19091 /debug/bindings)"
kill "$forward" 2>/dev/null
grep -q ' 404 ' <<<"$public" || fail "/debug/bindings on the public port answered: $public"
grep -q "sip:$user@" <<<"$bindings" || { echo "$bindings"; cat "$work/port-forward.log"; fail "/debug/bindings (port-forwarded) does not list $user"; }
# The API server's pod proxy dials the pod's IP, where nothing listens on 9091.
pod="$(kubectl -n "$ns" get pod -l app.kubernetes.io/component=registrar -o jsonpath='{.items[0].metadata.name}')"
if kubectl get --raw "/api/v1/namespaces/$ns/pods/$pod:9091/proxy/debug/bindings" >/dev/null 2>&1; then
  fail "/debug/bindings answered on the pod's IP"
fi
say "ok: /debug/bindings only on the pod's loopback"

# --- unregister, then register again ---------------------------------------------------
say "unregistering (Expires: 0)"
phone 0 || { cat "$work/sipp.out" >&2; fail "sipp unREGISTER"; }
wait_for "$device status Unregistered" registration_is "$device" Unregistered
phone 3600 || { cat "$work/sipp.out" >&2; fail "sipp REGISTER again"; }
wait_for "$device status Registered again" registration_is "$device" Registered

# --- an invalid device --------------------------------------------------------------------
say "an invalid device (assigned to a site that does not exist)"
kubectl apply -f - <<EOF || fail "apply the invalid device"
apiVersion: sip.switchboard.dev/v1alpha1
kind: SipDevice
metadata: {name: e2e-ghost-phone, namespace: $app_ns}
spec:
  macAddress: "02:00:00:00:e2:e2"
  sipUser: ghost
  assignment: {site: {site: no-such-site, extension: "1999"}}
EOF
wait_for "e2e-ghost-phone Accepted=False" kubectl -n "$app_ns" wait --for=condition=Accepted=false sipdevice/e2e-ghost-phone --timeout=5s
kubectl -n "$app_ns" get sipdevice e2e-ghost-phone -o jsonpath='{.status.conditions[?(@.type=="Accepted")].message}'
echo

# --- scale the registrar to 3 -----------------------------------------------------------
say "scaling the registrar to 3 replicas"
kubectl -n "$ns" scale deployment "$release-registrar" --replicas=3 || fail "scale"
kubectl -n "$ns" rollout status deployment "$release-registrar" --timeout="${timeout}s" || fail "3 replicas ready"
sleep 5
registration_is "$device" Registered || fail "$device no longer Registered after scaling to 3"
# A refresh through the Service still succeeds with 3 replicas behind it.
phone 3600 || { cat "$work/sipp.out" >&2; fail "re-REGISTER with 3 replicas"; }
sleep 3
registration_is "$device" Registered || fail "$device not Registered after a refresh with 3 replicas"
say "ok: still Registered with 3 registrar replicas"

echo "e2e PASSED"
exit 0
