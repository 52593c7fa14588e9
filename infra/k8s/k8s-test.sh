#!/usr/bin/env bash
# make k8s-test: Akson on the single-node cluster (after make k8s-platform and make k8s-akson),
# each check able to fail, each timed, figures printed:
#   1. the database through the cluster: a document written through FerretDB (the services'
#      connection string, Secret akson-mongodb) is read back
#   1b. a user's way through: client credentials and master data's import, an upstream personnel
#      token exchanged at identity, a DocumentReference written and read through the FHIR base,
#      the read's decision in audit (OPA's upload) and the chain verified (infra/k8s/flow.py, in
#      a pod labelled as the edge; the keys and the case from infra/k8s/trust.py)
#   2. NetworkPolicy: a pod of akson outside journal's allow list gets no connection to journal's
#      app port; the same pod labelled as the chart's readiness test gets 200 from /readyz
#   3. Pod Security: a privileged pod is refused in akson (enforce=restricted)
#   4. rolling upgrade: `helm upgrade` changing journal's dapr.io/log-level annotation while a
#      client asks journal's /readyz every 0.2 s; counts failed requests (must be 0)
#   5. a pod killed: journal's pod (kubectl delete --force) is replaced and Ready again; the
#      database's pods deleted (ferretdb forced, postgres gracefully), the document of 1 still there
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
K=$(ls -d "$HOME"/.cache/akson/tools/kubernetes/*/ | tail -1)
[[ -x $repo/infra/tools/build-cluster.sh ]] && K=$("$repo/infra/tools/build-cluster.sh" kubernetes | awk '{print $2}')
kubectl() { "${K%/}/kubectl" --kubeconfig "$S/admin.conf" "$@"; }
ns=akson
curl_image=ghcr.io/akson-health/akson-curl:7.88.1
py_image=$(kubectl -n $ns get deploy akson-journal -o jsonpath='{.spec.template.spec.containers[0].image}')
failed=0
step() { T0=$SECONDS; printf '%s %-72s ' "$(date -u +%H:%M:%S)" "$1"; }
ok() { echo "PASS ($((SECONDS - T0)) s)${1:+: $1}"; }
fail() { echo "FAIL ($((SECONDS - T0)) s): $1"; failed=1; }
sc='{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}'

client() { # name labels(yaml map) -> a curl pod sleeping, Ready
  kubectl -n $ns delete pod "$1" --ignore-not-found --wait=true >/dev/null 2>&1
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $ns, labels: $2}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - {name: c, image: $curl_image, imagePullPolicy: Never, command: [sleep, "3600"], securityContext: $sc,
     resources: {requests: {cpu: 5m, memory: 16Mi}, limits: {memory: 64Mi}}}
YAML
  kubectl -n $ns wait --for=condition=Ready pod/"$1" --timeout=60s >/dev/null
}
finish() { # pod lines -> the last lines of its log, once it has ended (true if it succeeded)
  local phase t=0
  while phase=$(kubectl -n $ns get pod "$1" -o jsonpath='{.status.phase}'); [[ $phase != Succeeded && $phase != Failed ]]; do
    ((t++ < 240)) || break; sleep 1
  done
  kubectl -n $ns logs "$1" 2>&1 | tail -"$2"
  kubectl -n $ns delete pod "$1" --wait=false >/dev/null 2>&1
  [[ $phase == Succeeded ]]
}
mongo() { # python code (db = the akson_k8s_test database) -> its output, in a pod of the service image
  kubectl -n $ns delete pod k8s-test-mongo --ignore-not-found --wait=true >/dev/null 2>&1
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: k8s-test-mongo, namespace: $ns}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: $py_image
    imagePullPolicy: Never
    command: [python, -c, "import os, pymongo; db = pymongo.MongoClient(os.environ['URL'], serverSelectionTimeoutMS=20000).akson_k8s_test; $1"]
    env: [{name: URL, valueFrom: {secretKeyRef: {name: akson-mongodb, key: connection-string}}}]
    securityContext: $sc
    resources: {requests: {cpu: 10m, memory: 64Mi}, limits: {memory: 256Mi}}
YAML
  finish k8s-test-mongo 3
}
flow() { # infra/k8s/flow.py in a pod of the service image labelled as the edge -> its lines
  ${AKSON_PYTHON:-$repo/.venv/bin/python} "$here/trust.py" "$S/trust" >/dev/null
  kubectl -n $ns create configmap k8s-test-flow --from-file=flow.py="$here/flow.py" \
    --from-file="$S/trust/flow" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n $ns create secret generic k8s-test-keys --from-file="$S/trust/keys" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n $ns delete pod k8s-test-flow --ignore-not-found --wait=true >/dev/null 2>&1
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: k8s-test-flow, namespace: $ns, labels: {app.kubernetes.io/component: edge}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: $py_image
    imagePullPolicy: Never
    command: [python, /flow/flow.py]
    securityContext: $sc
    resources: {requests: {cpu: 10m, memory: 64Mi}, limits: {memory: 256Mi}}
    volumeMounts: [{name: flow, mountPath: /flow, readOnly: true}, {name: keys, mountPath: /keys, readOnly: true}]
  volumes:
  - {name: flow, configMap: {name: k8s-test-flow}}
  - {name: keys, secret: {secretName: k8s-test-keys, defaultMode: 0440}}
YAML
  finish k8s-test-flow 12
}
loop() { # seconds -> lines "code" per request of a readiness-test client to journal's /readyz
  kubectl -n $ns exec k8s-test-ok -- sh -c "end=\$((\$(date +%s) + $1)); while [ \$(date +%s) -lt \$end ]; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 3 http://akson-journal:8000/readyz; sleep 0.2; done"
}
count() { local n e; n=$(grep -c . "$1"); e=$(grep -vc '^200$' "$1"); echo "$n requests, $e failed ($(grep -v '^200$' "$1" | sort | uniq -c | tr -s ' \n' ' '))"; }
out=$(mktemp -d); trap 'rm -rf "$out"; kubectl -n $ns delete pod k8s-test-ok k8s-test-deny k8s-test-mongo k8s-test-flow --ignore-not-found --wait=false >/dev/null 2>&1; kubectl -n $ns delete secret k8s-test-keys --ignore-not-found >/dev/null 2>&1' EXIT

marker=$(openssl rand -hex 8)
step "1. a document written through FerretDB (akson-mongodb) and read back"
if r=$(mongo "db.markers.insert_one({'_id': '$marker', 'at': 'k8s-test'}); print(db.markers.find_one({'_id': '$marker'}))"); then
  ok "$r"; else fail "$r"; fi

step "1b. a user's token -> write -> read -> the decision in audit (flow.py)"
if r=$(flow); then ok; else fail "see below"; fi
echo "$r"

step "2. NetworkPolicy: unlisted pod -> journal:8000 refused, readiness-test pod -> 200"
client k8s-test-deny '{app: k8s-test}'
client k8s-test-ok '{app.kubernetes.io/instance: akson, app.kubernetes.io/component: readiness-test}'
deny=$(kubectl -n $ns exec k8s-test-deny -- curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://akson-journal:8000/readyz 2>&1); rc_deny=$?
allow=$(kubectl -n $ns exec k8s-test-ok -- curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://akson-journal:8000/readyz 2>&1)
if [[ $rc_deny -ne 0 && $deny == 000* && $allow == 200 ]]; then ok "unlisted: curl exit $rc_deny ($deny), listed: $allow"
else fail "unlisted: exit $rc_deny ($deny), listed: $allow"; fi

step "3. a privileged pod refused in akson (Pod Security restricted)"
if r=$(kubectl -n $ns run k8s-test-privileged --image=$curl_image --image-pull-policy=Never --restart=Never \
    --overrides='{"spec":{"containers":[{"name":"k8s-test-privileged","image":"'$curl_image'","securityContext":{"privileged":true}}]}}' 2>&1); then
  kubectl -n $ns delete pod k8s-test-privileged --wait=false >/dev/null 2>&1; fail "created: $r"
elif grep -q 'violates PodSecurity "restricted' <<<"$r"; then ok "$(grep -o 'privileged ([^)]*)' <<<"$r" | head -1)"
else fail "$r"; fi

step "4. rolling upgrade of journal under a request loop, no failed request"
level=$(kubectl -n $ns get deploy akson-journal -o jsonpath='{.spec.template.metadata.annotations.dapr\.io/log-level}')
new=$([[ $level == info ]] && echo warn || echo info)
loop 75 > "$out/upgrade" &
lp=$!
sleep 5
t_up=$SECONDS
"$here/akson.sh" --set services.journal.dapr.logLevel=$new >/dev/null 2>"$out/upgrade.err" || cat "$out/upgrade.err"
t_up=$((SECONDS - t_up))
wait $lp
now=$(kubectl -n $ns get deploy akson-journal -o jsonpath='{.spec.template.metadata.annotations.dapr\.io/log-level}')
if [[ $now == "$new" && $(grep -vc '^200$' "$out/upgrade") -eq 0 ]]; then ok "log-level $level -> $now, upgrade+test $t_up s, $(count "$out/upgrade")"
else fail "log-level $level -> $now, upgrade+test $t_up s, $(count "$out/upgrade")"; fi

step "5a. journal's pod killed (--force): replaced and Ready"
old=$(kubectl -n $ns get pod -l app.kubernetes.io/component=journal -o jsonpath='{.items[0].metadata.name}')
loop 60 > "$out/kill" &
lp=$!
sleep 3
kubectl -n $ns delete pod "$old" --force --grace-period=0 >/dev/null 2>&1
t_k=$SECONDS
kubectl -n $ns wait --for=condition=Available deploy/akson-journal --timeout=180s >/dev/null 2>&1
until [[ $(kubectl -n $ns get pod -l app.kubernetes.io/component=journal -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -v "^$old " | grep -c ' True$') -ge 1 ]]; do
  ((SECONDS - t_k < 180)) || break; sleep 1
done
t_k=$((SECONDS - t_k))
wait $lp
if [[ $t_k -lt 180 ]]; then ok "a new pod Ready after $t_k s; $(count "$out/kill") (one replica: the gap is the restart)"
else fail "no new Ready pod after $t_k s"; fi

# PostgreSQL is deleted gracefully: a forced delete lets its replacement start on the same
# hostPath data directory while the old server may still run (other PID and IPC namespaces: the
# lock file does not see it); after such runs its catalog failed ("tuple concurrently updated")
step "5b. ferretdb killed (--force), postgres deleted (graceful): the document of 1 still there"
kubectl -n akson-data delete pod -l app=ferretdb --force --grace-period=0 >/dev/null 2>&1
kubectl -n akson-data delete pod -l app=postgres --wait=true >/dev/null 2>&1
t_k=$SECONDS
kubectl -n akson-data rollout status deploy/postgres --timeout=180s >/dev/null 2>&1
kubectl -n akson-data rollout status deploy/ferretdb --timeout=180s >/dev/null 2>&1
if r=$(mongo "d = db.markers.find_one({'_id': '$marker'}); print(d); assert d"); then ok "back in $((SECONDS - t_k)) s: $r"; else fail "$r"; fi

echo "k8s-test: $([[ $failed == 0 ]] && echo PASSED || echo FAILED) in $SECONDS s"
exit $failed
