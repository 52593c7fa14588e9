#!/usr/bin/env bash
# Build the non-Python tools (opa, ferretdb, daprd, regal, helm, kubeconform, crane, dapr-control-plane)
# from their pinned Go modules.
#
#   infra/tools/build.sh TOOL...     builds what is missing, prints one "TOOL PATH" line each
#
# dapr-control-plane is five commands of one module built in one go build: its PATH is a
# directory holding operator, injector, sentry, placement and scheduler.
#
# Binaries are cached outside the clone in $AKSON_TOOLS_CACHE (default ~/.cache/akson/tools),
# keyed by tool, pinned version and a hash of the wrapper module, so every clone and every CI
# run on the same machine reuses them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${AKSON_TOOLS_CACHE:-${HOME}/.cache/akson/tools}"
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"

# main package of each tool, in its own wrapper module
declare -A main_package=(
  [opa]=github.com/open-policy-agent/opa
  [ferretdb]=github.com/FerretDB/FerretDB/cmd/ferretdb
  [regal]=github.com/open-policy-agent/regal
  [daprd]=.
  [helm]=helm.sh/helm/v3/cmd/helm
  [kubeconform]=github.com/yannh/kubeconform/cmd/kubeconform
  [crane]=github.com/google/go-containerregistry/cmd/crane
  [dapr-control-plane]="github.com/dapr/dapr/cmd/operator github.com/dapr/dapr/cmd/injector github.com/dapr/dapr/cmd/sentry github.com/dapr/dapr/cmd/placement github.com/dapr/dapr/cmd/scheduler"
)
# the module whose version names the build
declare -A pinned_module=(
  [opa]=github.com/open-policy-agent/opa
  [ferretdb]=github.com/FerretDB/FerretDB
  [regal]=github.com/open-policy-agent/regal
  [daprd]=github.com/dapr/dapr
  [helm]=helm.sh/helm/v3
  [kubeconform]=github.com/yannh/kubeconform
  [crane]=github.com/google/go-containerregistry
  [dapr-control-plane]=github.com/dapr/dapr
)

pinned_version() { # tool -> version in its go.mod
  (cd "$here/$1" && go list -m -f '{{.Version}}' "${pinned_module[$1]}")
}

build_one() {
  local tool="$1" version key out work
  [[ -n "${main_package[$tool]:-}" ]] || { echo "unknown tool: $tool" >&2; return 2; }
  version="$(pinned_version "$tool")"
  key="$(cd "$here/$tool" && shopt -s nullglob && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)"
  out="$cache/$tool/$version-$key/$tool"
  [[ "$tool" != dapr-control-plane ]] || out="${out%/*}/bin"
  if [[ ! -e "$out" ]]; then
    echo "building $tool $version (first time on this machine; cached in $cache)" >&2
    local started=$SECONDS
    work="$(mktemp -d)"
    cp -r "$here/$tool/." "$work/"
    local ldflags="-s -w"
    case "$tool" in
      dapr-control-plane)
        ldflags+=" -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}"
        ;;
      daprd)
        # Take cmd/daprd/app from the pinned module, minus its import of every component.
        local dapr_dir
        dapr_dir="$(cd "$work" && go mod download -json github.com/dapr/dapr | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
        mkdir -p "$work/app"
        sed '/cmd\/daprd\/components"/d' "$dapr_dir/cmd/daprd/app/app.go" > "$work/app/app.go"
        ldflags+=" -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}"
        ;;
      helm)
        # As helm's own Makefile: the default Kubernetes version (helm template, lint) follows
        # the client-go it is built with (v0.N -> 1.N), not the 1.20 compiled into the source.
        local k8s_minor
        k8s_minor="$(cd "$work" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
        ldflags+=" -X helm.sh/helm/v3/internal/version.version=${version}"
        for pkg in pkg/lint/rules pkg/chartutil; do
          ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
        done
        ;;
      opa)
        ldflags+=" -X github.com/open-policy-agent/opa/v1/version.Version=${version#v}"
        ;;
      ferretdb)
        # FerretDB reads its version from a file generated in its own checkout and refuses to
        # start without it, so build inside a copy of the pinned module with that file written.
        local ferret_dir
        ferret_dir="$(cd "$work" && go mod download -json github.com/FerretDB/FerretDB | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
        cp -r "$ferret_dir/." "$work/ferretdb-src/" 2>/dev/null || { mkdir -p "$work/ferretdb-src" && cp -r "$ferret_dir/." "$work/ferretdb-src/"; }
        chmod -R u+w "$work/ferretdb-src"
        echo "$version" > "$work/ferretdb-src/build/version/version.txt"
        echo "akson-tools" > "$work/ferretdb-src/build/version/package.txt"
        work="$work/ferretdb-src"
        main_package[$tool]=./cmd/ferretdb
        ;;
    esac
    mkdir -p "$(dirname "$out")"
    local target="$out.tmp"
    [[ "$tool" != dapr-control-plane ]] || target="$out.tmp/"
    # shellcheck disable=SC2086 # several main packages, one go build
    (cd "$work" && CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$target" ${main_package[$tool]})
    mv "$out.tmp" "$out"
    rm -rf "${work%/ferretdb-src}"
    echo "built $tool $version in $((SECONDS - started)) s" >&2
  fi
  echo "$tool $out"
}

[[ $# -gt 0 ]] || set -- opa ferretdb daprd regal
for tool in "$@"; do build_one "$tool"; done
