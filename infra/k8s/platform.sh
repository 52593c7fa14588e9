#!/usr/bin/env bash
# make k8s-platform: on the single-node cluster of stage 2 (make k8s-up, infra/k8s/cluster.sh),
#   1. import every image of `make images` (images.tsv) into the node's containerd (namespace k8s.io)
#   2. Dapr 1.18.2's control plane into dapr-system, from the chart inside the pinned dapr module
#      (infra/tools/daprd's github.com/dapr/dapr, charts/dapr): mTLS on, HA off, images as imported
#   3. the data services in akson-data: Redis and FerretDB v1 on PostgreSQL (infra/k8s/data.sh)
#   4. the Secrets the chart expects in akson (generated here, never in git; kept when present)
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
  # scheduler: its etcd in memory (no storage provisioner on this cluster; HA off: one replica)
  helm upgrade --install dapr "$chart" --namespace dapr-system --create-namespace \
    --set global.registry=ghcr.io/dapr --set global.tag=$DAPR_VERSION --set global.imagePullPolicy=Never \
    --set global.mtls.enabled=true --set global.ha.enabled=false \
    --set dapr_sidecar_injector.sidecarDropALLCapabilities=true \
    --set dapr_scheduler.cluster.inMemoryStorage=true \
    --wait --timeout 10m >/dev/null
  kubectl -n dapr-system get pods -o wide >&2
  log "dapr: control plane $DAPR_VERSION ready in $((SECONDS - t0)) s"
}

what=${1:-all}
wait_cluster
case $what in
  images) images ;;
  dapr) dapr ;;
  data) "$here/data.sh" ;;
  secrets) secrets ;;
  all) images; dapr; "$here/data.sh"; secrets ;;
  *) die "usage: $0 [images|dapr|data|secrets|all]" ;;
esac
