#!/usr/bin/env bash
# make k8s-akson: `helm upgrade --install akson charts/akson -n akson` with infra/k8s/cluster-values.yaml
# on the single-node cluster (after make k8s-platform), --wait, then `helm test akson`. Timed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="${AKSON_K8S_STATE:-/var/lib/akson-k8s}"
HELM=$("$repo/infra/tools/build.sh" helm | awk '{print $2}')
helm() { "$HELM" --kubeconfig "$S/admin.conf" "$@"; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
t0=$SECONDS
# $S/trust/values.yaml: identity's upstream issuer and clients file (platform.sh, trust.py)
helm upgrade --install akson "$repo/charts/akson" -n akson -f "$here/cluster-values.yaml" \
  -f "$S/trust/values.yaml" "$@" \
  --wait --timeout "${AKSON_HELM_TIMEOUT:-15m}" >/dev/null
log "helm install/upgrade akson: ready in $((SECONDS - t0)) s"
t0=$SECONDS
helm test akson -n akson --timeout 5m
log "helm test akson: passed in $((SECONDS - t0)) s"
