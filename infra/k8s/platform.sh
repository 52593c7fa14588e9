#!/usr/bin/env bash
# make k8s-platform: on the single-node cluster of stage 2 (make k8s-up, infra/k8s/cluster.sh),
#   1. import every image of `make images` (images.tsv) into the node's containerd (namespace k8s.io)
#   2. Dapr 1.18.2's control plane into dapr-system, from the chart inside the pinned dapr module
#      (infra/tools/daprd's github.com/dapr/dapr, charts/dapr): mTLS on, HA off, images as imported
#   3. the data services in akson-data: Redis and FerretDB v1 on PostgreSQL (infra/k8s/data.sh)
#   4. the Secrets the chart expects in akson (generated here, never in git; kept when present),
#      and who identity trusts here (infra/k8s/trust.py: an upstream personnel issuer and two
#      clients; their private keys stay in $S/trust/keys, the public side is ConfigMap
#      akson-identity-trust, mounted by the values in $S/trust/values.yaml that akson.sh passes)
# Each step timed. Never starts or stops the cluster itself.
#   platform.sh [images|dapr|data|secrets|all]   (default all)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
R=/run/akson-k8s
IMAGES="${AKSON_IMAGES_DIR:-$HOME/.cache/akson/images}"
DAPR_VERSION=1.18.2
NICE=(nice -n 19 ionice -c3)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# the cluster's binaries: build-cluster.sh (stage 2) when present, else its cache
cluster_bin() { # bundle -> directory
  if [[ -x $repo/infra/tools/build-cluster.sh ]]; then
    "$repo/infra/tools/build-cluster.sh" "$1" | awk '{print $2}'
  else
    local d; d=$(ls -d "$HOME/.cache/akson/tools/$1"/*/ 2>/dev/null | tail -1)
    [[ -n $d ]] || die "no $1 binaries: run make k8s-binaries"
    echo "${d%/}"
  fi
}
K=$(cluster_bin kubernetes)
CTRD=$(cluster_bin containerd)
CRICTL=$(cluster_bin cri-tools)
HELM=$("$repo/infra/tools/build.sh" helm | awk '{print $2}')
kubectl() { "$K/kubectl" --kubeconfig "$S/admin.conf" "$@"; }
helm() { "$HELM" --kubeconfig "$S/admin.conf" "$@"; }
# containerd 2.4 warns about cgroup v1 on every call: that line is dropped, nothing else
ctr() { "${NICE[@]}" "$CTRD/ctr" --address "$R/containerd/containerd.sock" "$@" 2> >(grep -v 'support for cgroup v1 is deprecated' >&2); }
crictl() { "$CRICTL/crictl" --runtime-endpoint "unix://$R/containerd/containerd.sock" "$@"; }

wait_cluster() { # the apiserver answers (polled every 30 s: stage 2 owns the cluster)
  local t0=$SECONDS
  until kubectl get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS - t0 < ${AKSON_K8S_WAIT:-900})) || die "the cluster's apiserver does not answer (make k8s-up)"
    log "apiserver not answering; waiting 30 s"; sleep 30
  done
}

images() { # import what images.tsv lists (IMAGES_TSV: other lists too), unless the node has that image id
  local t0=$SECONDS n=0 listed=0 ref digest size file id have tsv
  have=$(crictl images --no-trunc 2>/dev/null | awk 'NR > 1 {print $1 ":" $2 " " $3}')
  for tsv in "$IMAGES/images.tsv" ${IMAGES_TSV:-}; do
    [[ -f $tsv ]] || die "no $tsv: run make images"
    while IFS=$'\t' read -r ref digest size file id; do
      [[ -n $ref ]] || continue
      listed=$((listed + 1))
      grep -qxF "$ref $id" <<<"$have" && continue
      ctr -n k8s.io images import --platform linux/amd64 "$file" >/dev/null
      n=$((n + 1))
    done < "$tsv"
  done
  log "images: $n imported, $((listed - n)) already there ($listed listed) in $((SECONDS - t0)) s"
}

dapr_chart() {
  local dir
  dir=$(cd "$repo/infra/tools/daprd" && go mod download -json "github.com/dapr/dapr@v$DAPR_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -f $dir/charts/dapr/Chart.yaml ]] || die "no charts/dapr in $dir"
  echo "$dir/charts/dapr"
}

dapr() {
  local t0=$SECONDS chart; chart=$(dapr_chart)
  # the module's chart says tag 'edge': the images are tagged as released (1.18.2).
  # webhookFailurePolicy Fail: the chart's Ignore let a pod of akson start without its sidecar when
  # the injector did not answer within 10 s on the loaded node (the API server "failing open")
  # and only for pods of namespace akson: with Fail on every namespace, a fresh install refused
  # the injector's own pod (and Dapr's others) because the injector did not answer yet
  # (2026-12-02, a new machine: "failed calling webhook sidecar-injector.dapr.io" for 10 min)
  # scheduler: its etcd in memory (no storage provisioner on this cluster; HA off: one replica)
  helm upgrade --install dapr "$chart" --namespace dapr-system --create-namespace \
    --set global.registry=ghcr.io/dapr --set global.tag=$DAPR_VERSION --set global.imagePullPolicy=Never \
    --set global.mtls.enabled=true --set global.ha.enabled=false \
    --set dapr_sidecar_injector.sidecarDropALLCapabilities=true \
    --set dapr_sidecar_injector.webhookFailurePolicy=Fail \
    --set-json 'dapr_sidecar_injector.namespaceSelector={"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"In","values":["akson"]}]}' \
    --set dapr_scheduler.cluster.inMemoryStorage=true \
    --wait --timeout 10m >/dev/null
  kubectl -n dapr-system get pods -o wide >&2
  log "dapr: control plane $DAPR_VERSION ready in $((SECONDS - t0)) s"
}

# The Secrets charts/akson references (infra/k8s/README.md sections 2 to 4), generated here into
# namespace akson, created once (a rerun keeps them); the database and Redis ones from the
# passwords data.sh generated in akson-data. Values pass through stdin/files of a private
# temporary directory, never through an argument or the repository.
secrets() {
  local t0=$SECONDS ns=akson tmp n=0
  kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label --overwrite namespace $ns pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest >/dev/null
  tmp=$(mktemp -d); chmod 0700 "$tmp"
  trap 'rm -rf "$tmp"' RETURN
  get() { kubectl -n akson-data get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }
  make_secret() { # name key file [key file ...]
    local name=$1 args=(); shift
    kubectl -n $ns get secret "$name" >/dev/null 2>&1 && return 0
    while (($#)); do args+=(--from-file="$1=$2"); shift 2; done
    kubectl -n $ns create secret generic "$name" "${args[@]}" >/dev/null
    n=$((n + 1))
  }
  # no trailing newline: a token is sent as a header as it is (OPA and daprd do not strip; the
  # services do, akson_common.settings.Secret)
  rand() { openssl rand -hex 32 | tr -d '\n' > "$tmp/$1"; echo "$tmp/$1"; }
  get redis redis-password > "$tmp/redis"
  make_secret akson-redis redis-password "$tmp/redis"
  printf 'mongodb://akson_app:%s@ferretdb.akson-data.svc.cluster.local:27017/?authMechanism=PLAIN' \
    "$(get postgres app-password)" > "$tmp/mongodb"
  make_secret akson-mongodb connection-string "$tmp/mongodb"
  make_secret akson-dapr-api-token token "$(rand dapr)"
  make_secret akson-app-api-token token "$(rand app)"
  make_secret akson-audit-upload-token token "$(rand audit)"
  make_secret akson-opa-token token "$(rand opa)"
  make_secret akson-partition-key secret "$(rand partition)"
  make_secret akson-message-inbound-token token "$(rand inbound)"
  openssl rand 32 | basenc --base64url | tr -d '=\n' > "$tmp/kek"
  make_secret akson-identity-kek kek "$tmp/kek"
  # welfare's client key: an ES256 private JWK (P-256), made from openssl's key
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/welfare.pem" 2>/dev/null
  openssl ec -in "$tmp/welfare.pem" -text -noout 2>/dev/null | python3 -c '
import base64, json, re, sys
text = sys.stdin.read()
def hexblock(label):
    block = re.search(label + r":\s*((?:[0-9a-f]{2}:?\s*)+)", text).group(1)
    return bytes.fromhex(re.sub(r"[^0-9a-f]", "", block))
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
d, pub = hexblock("priv"), hexblock("pub")
d = d[-32:].rjust(32, b"\0")
print(json.dumps({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "akson-welfare-k8s",
                  "x": b64(pub[1:33]), "y": b64(pub[33:65]), "d": b64(d)}))' > "$tmp/welfare.jwk"
  make_secret akson-welfare-client-key jwk "$tmp/welfare.jwk"
  # integrations' exports binding (S3): no bucket here; placeholders so its component loads
  make_secret akson-exports access-key "$(rand s3a)" secret-key "$(rand s3s)"
  ${AKSON_PYTHON:-$repo/.venv/bin/python} "$here/trust.py" "$S/trust" >/dev/null
  kubectl -n $ns create configmap akson-identity-trust --from-file="$S/trust/identity" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  log "secrets: $n created in $ns ($(kubectl -n $ns get secrets --no-headers | wc -l) there) in $((SECONDS - t0)) s"
}

what=${1:-all}
wait_cluster
case $what in
  images) images ;;
  dapr) dapr ;;
  data) K=$K "$here/data.sh" ;;
  secrets) secrets ;;
  all) images; dapr; K=$K "$here/data.sh"; secrets ;;
  *) die "usage: $0 [images|dapr|data|secrets|all]" ;;
esac
