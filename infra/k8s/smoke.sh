#!/usr/bin/env bash
# make k8s-smoke: what the single-node cluster (make k8s-up) must do, each check able to fail,
# each timed:
#   1. node Ready
#   2. a pod of the agnhost test image runs, as a non-root uid (read from the host's /proc)
#   3. a second pod reaches it through a Service by its DNS name (CoreDNS, kube-proxy)
#   4. a NetworkPolicy denying ingress makes that fail; removing it makes it work again
#   5. a privileged pod is refused in a namespace with pod-security.kubernetes.io/enforce=restricted
# The namespace akson-smoke is recreated on each run and deleted at the end (SMOKE_KEEP=1: kept).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
K=$("$repo/infra/tools/build-cluster.sh" kubernetes | awk '{print $2}')
CRICTL=$("$repo/infra/tools/build-cluster.sh" cri-tools | awk '{print $2}')/crictl
crictl() { "$CRICTL" --config "$S/crictl.yaml" "$@"; }
kubectl() { "$K/kubectl" --kubeconfig "$S/admin.conf" "$@"; }
ns=akson-smoke
image=registry.k8s.io/e2e-test-images/agnhost:akson-1.37.2
target=web.$ns.svc.cluster.local:8080
failed=0 t_all=$SECONDS

step() { T0=$SECONDS; printf '%s %-70s ' "$(date -u +%H:%M:%S)" "$1"; }
ok() { echo "PASS ($((SECONDS - T0)) s)${1:+: $1}"; }
fail() { echo "FAIL ($((SECONDS - T0)) s): $1"; failed=1; }

connects() { # from the client pod to the Service by DNS name, within 5 s: 0 connected, 1 not
  # connected (agnhost printed TIMEOUT, REFUSED, DNS...), 2 the check itself failed (exec)
  local rc=0
  out=$(kubectl -n $ns exec client -- /agnhost connect "$target" --timeout 5s 2>&1) || rc=$?
  ((rc == 0)) && return 0
  grep -qE '^(TIMEOUT|REFUSED|DNS|OTHER|UNKNOWN)' <<<"$out" && return 1
  return 2
}

step "1. node akson-k8s Ready"
if out=$(kubectl wait --for=condition=Ready node/akson-k8s --timeout=60s 2>&1); then
  ok "$(kubectl get node akson-k8s -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}')"
else fail "$out"; fi

kubectl delete namespace $ns --ignore-not-found --wait=true >/dev/null
kubectl create namespace $ns >/dev/null
kubectl label namespace $ns pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null

pod() { # name app args...
  local name=$1 app=$2; shift 2
  local args; args=$(printf '"%s",' "$@"); args="[${args%,}]"
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {app: $app}}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: $name
    image: $image
    imagePullPolicy: Never
    args: $args
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
EOF
}

step "2. agnhost pod Running, its process non-root"
{
  pod web web netexec --http-port=8080
  echo ---
  cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec: {selector: {app: web}, ports: [{port: 8080, targetPort: 8080}]}
EOF
  echo ---
  pod client client pause
} | kubectl apply -f - >/dev/null
if out=$(kubectl -n $ns wait --for=condition=Ready pod/web pod/client --timeout=120s 2>&1); then
  cid=$(crictl ps -q --name '^web$' | head -1)
  pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$cid")
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  if [[ -n $uid && $uid != 0 ]]; then ok "web pid $pid on the host runs as uid $uid"; else fail "web runs as uid '${uid:-?}'"; fi
else fail "$out"; kubectl -n $ns describe pods | tail -30; fi

step "3. client -> Service web by DNS name ($target)"
tries=0
until connects; do
  tries=$((tries + 1)); ((tries < 20)) || break
  sleep 1
done
if ((tries < 20)); then ok "connected (after $tries retries)"; else fail "$out"; fi

step "4. NetworkPolicy deny-ingress on web: the connection fails"
kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-deny-ingress, namespace: $ns}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
EOF
denied=0
for _ in $(seq 15); do
  rc=0; connects || rc=$?
  if ((rc == 1)); then denied=1; break; fi
  sleep 1
done
if ((denied)); then ok "blocked: agnhost connect said $(grep -m1 -E '^(TIMEOUT|REFUSED|DNS|OTHER|UNKNOWN)' <<<"$out")"; else fail "still connects with the policy in place: $out"; fi

step "   NetworkPolicy removed: the connection works again"
kubectl -n $ns delete networkpolicy web-deny-ingress >/dev/null
allowed=0
for _ in $(seq 15); do
  if connects; then allowed=1; break; fi
  sleep 1
done
if ((allowed)); then ok; else fail "no connection after the policy was removed"; fi

step "5. privileged pod refused in the restricted namespace"
if out=$(kubectl apply -f - 2>&1 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: $ns}
spec:
  containers:
  - {name: p, image: $image, imagePullPolicy: Never, args: [pause], securityContext: {privileged: true}}
EOF
); then fail "created: $out"; kubectl -n $ns delete pod privileged --now >/dev/null
elif grep -q 'violates PodSecurity "restricted' <<<"$out"; then ok "$(grep -o 'violates PodSecurity[^:]*' <<<"$out")"
else fail "refused, but not by PodSecurity: $out"; fi

[[ ${SMOKE_KEEP:-0} == 1 ]] || kubectl delete namespace $ns --wait=false >/dev/null
echo "smoke: $( ((failed)) && echo FAILED || echo PASSED ) in $((SECONDS - t_all)) s"
exit $failed
