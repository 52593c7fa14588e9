#!/usr/bin/env bash
# Build the binaries of the single-node cluster (infra/k8s, make k8s-up) from their pinned Go
# modules, as build.sh does for the single-binary tools; each bundle has its wrapper module in
# infra/tools/<bundle> and may hold several binaries, built in ONE go build (shared compilation).
#
#   infra/tools/build-cluster.sh BUNDLE...   builds what is missing, prints one "BUNDLE DIR" line each
#
# Bundles: kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl, agnhost), etcd, containerd (containerd, ctr, containerd-shim-runc-v2),
# cni-plugins (bridge, host-local, loopback, portmap), cri-tools (crictl), coredns,
# kube-network-policies. Cached in $AKSON_TOOLS_CACHE (default ~/.cache/akson/tools), keyed by
# the pinned version and a hash of the wrapper module; builds run under nice/ionice.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${AKSON_TOOLS_CACHE:-${HOME}/.cache/akson/tools}"
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"

declare -A pinned_module=(
  [kubernetes]=k8s.io/kubernetes
  [etcd]=go.etcd.io/etcd/server/v3
  [containerd]=github.com/containerd/containerd/v2
  [cni-plugins]=github.com/containernetworking/plugins
  [cri-tools]=sigs.k8s.io/cri-tools
  [coredns]=github.com/coredns/coredns
  [kube-network-policies]=sigs.k8s.io/kube-network-policies
)
# main packages of each bundle ("pkg" or "pkg=name" to name the binary)
declare -A main_packages=(
  [kubernetes]="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
    k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/test/images/agnhost"
  [etcd]="go.etcd.io/etcd/server/v3=etcd"
  [containerd]="github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
  [cni-plugins]="github.com/containernetworking/plugins/plugins/main/bridge
    github.com/containernetworking/plugins/plugins/ipam/host-local
    github.com/containernetworking/plugins/plugins/main/loopback
    github.com/containernetworking/plugins/plugins/meta/portmap"
  [cri-tools]="sigs.k8s.io/cri-tools/cmd/crictl"
  [coredns]=".=coredns"
  [kube-network-policies]="sigs.k8s.io/kube-network-policies/cmd=kube-network-policies"
)

pinned_version() { (cd "$here/$1" && go list -m -f '{{.Version}}' "${pinned_module[$1]}"); }
module_dir() { (cd "$1" && go mod download -json "$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); }

build_bundle() {
  local bundle="$1" version key out work
  [[ -n "${pinned_module[$bundle]:-}" ]] || { echo "unknown bundle: $bundle" >&2; return 2; }
  version="$(pinned_version "$bundle")"
  key="$(cd "$here/$bundle" && shopt -s nullglob && cat go.mod go.sum ./*.go ./*.sh ./*.patch | sha256sum | cut -c1-12)"
  out="$cache/$bundle/$version-$key"
  if [[ ! -f "$out/.complete" ]]; then
    echo "building $bundle $version (first time on this machine; cached in $cache)" >&2
    local started=$SECONDS ldflags="-s -w" tags="" cgo=0
    work="$(mktemp -d)"
    cp -r "$here/$bundle/." "$work/"
    case "$bundle" in
      kubernetes)
        local v=${version#v}
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
          ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=${v%%.*} -X $pkg.gitMinor=$(cut -d. -f2 <<<"$v")"
          ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
        done
        ;;
      etcd) ;;
      containerd)
        ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$version"
        tags="no_btrfs no_devmapper no_zfs"
        ;;
      cri-tools)
        ldflags+=" -X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}"
        ;;
      kube-network-policies)
        # A patched copy of the pinned module (knp.sh): this kernel has no CONFIG_NFT_QUEUE,
        # so the nftables "queue" expressions become xt NFQUEUE targets (nft_compat).
        if [[ -f "$here/$bundle/knp.sh" ]]; then
          cp -r "$(module_dir "$work" sigs.k8s.io/kube-network-policies)/." "$work/knp-src/"
          chmod -R u+w "$work/knp-src"
          bash "$here/$bundle/knp.sh" "$work/knp-src"
          (cd "$work" && go mod edit -replace sigs.k8s.io/kube-network-policies=./knp-src)
        fi
        ;;
    esac
    local -a pkgs=() renames=()
    for spec in ${main_packages[$bundle]}; do
      pkgs+=("${spec%%=*}")
      [[ "$spec" == *=* ]] && renames+=("${spec#*=}")
    done
    rm -rf "$out" && mkdir -p "$out.tmp"
    if ((${#renames[@]})); then
      # a single package whose binary needs its own name
      (cd "$work" && CGO_ENABLED=$cgo nice -n 19 ionice -c3 go build -tags "$tags" -ldflags "$ldflags" -o "$out.tmp/${renames[0]}" "${pkgs[@]}")
    else
      (cd "$work" && CGO_ENABLED=$cgo nice -n 19 ionice -c3 go build -tags "$tags" -ldflags "$ldflags" -o "$out.tmp/" "${pkgs[@]}")
    fi
    rm -rf "$work"
    mv "$out.tmp" "$out"
    touch "$out/.complete"
    echo "built $bundle $version in $((SECONDS - started)) s: $(cd "$out" && ls | tr '\n' ' ')" >&2
  fi
  echo "$bundle $out"
}

[[ $# -gt 0 ]] || set -- kubernetes etcd containerd cni-plugins cri-tools coredns kube-network-policies
for bundle in "$@"; do build_bundle "$bundle"; done
