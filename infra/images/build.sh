#!/usr/bin/env bash
# OCI images of the platform without a container engine (issue 21, stage 1).
#
#   infra/images/build.sh [services|static|dapr|tests|all]...   (default: all)
#
# services  one image per service (services/*/<name>/main.py), named as the chart resolves them
#           (image.registry/image.repositoryPrefix<name>:appVersion), all sharing three layers:
#             1. a Debian bookworm root filesystem made by mmdebstrap (python3 = CPython 3.11,
#                ca-certificates, tzdata, libstdc++6; user akson 10001)
#             2. /app/.venv with the uv-locked third-party wheels (uv export --frozen, hashes)
#             3. the workspace packages (akson-common and every service) installed into it
#           and differing only in their config (AKSON_SERVICE), as the Dockerfile's runtime stage.
# static    opa and daprd (infra/tools/build.sh) on a minimal static base (nonroot 65532)
# dapr      Dapr's control plane (operator, injector, sentry, placement, scheduler) from the
#           same pinned dapr module as daprd, named as Dapr's Helm chart expects them
# tests     curl (Debian's) for the chart's `helm test` pod: --set tests.image=<its reference>
# data      the data services of the cluster (infra/k8s/data.sh): Debian's redis-server, Debian's
#           PostgreSQL 15, FerretDB v1 (infra/tools/build.sh ferretdb) on the static base
#
# Output: one docker-archive tarball per image in $AKSON_IMAGES_DIR (~/.cache/akson/images),
# importable with `ctr -n k8s.io images import FILE`; images.tsv there lists reference,
# manifest digest, size, file and image id (config digest). Every layer is cached under $AKSON_IMAGES_DIR/cache keyed by what it
# is made of; the same inputs give the same digests (SOURCE_DATE_EPOCH, sorted tars).
set -euo pipefail
shopt -s inherit_errexit

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${AKSON_IMAGES_DIR:-${HOME}/.cache/akson/images}"
cache="$out/cache"
export SOURCE_DATE_EPOCH=1735689600 # 2025-01-01: mmdebstrap, pyc (checked hash), every file time in a layer
export PATH="$PATH:/usr/local/go/bin"
heavy=(nice -n 19 ionice -c3)
uv=(python3 -m uv)
mkdir -p "$cache"

log() { echo "[images $(date -u +%T)] $*" >&2; }
sha() { sha256sum | cut -c1-16; }

# A deterministic layer tarball of a directory: sorted, numeric owners kept, file times
# clamped to SOURCE_DATE_EPOCH, no atime/ctime.
layer_tar() { # dir out.tar [tar args...]
  local dir="$1" tarball="$2"; shift 2
  "${heavy[@]}" tar -C "$dir" --sort=name --format=posix --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime "$@" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
}

# the cache keeps the current entry of a kind only (older root filesystems, layers, binaries go)
prune() { # prefix current-entry
  local entry name
  for entry in "$cache/$1"*; do
    name="${entry##*/}"
    [[ "${name%%.*}" == "${2##*/}" ]] || rm -rf "$entry"
  done
}

# ---------------------------------------------------------------------------------------------
# Layer 1: the Debian root filesystem (mmdebstrap, cached by its recipe)
debian_mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# libstdc++6: grpcio's wheel (dapr) links it, as python:3.11-slim has it; usr-is-merged: /usr is
# merged already, so usrmerge (and the perl it pulls in, 50 MB) can go again
debian_packages="python3,ca-certificates,tzdata,libstdc++6,usr-is-merged"
debian_purge="usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl perl-modules-5.36 libperl5.36"
mmdebstrap_args() { # packages [purge [customize-hooks...]] -> sets the array args
  local purge="${2:-$debian_purge}" hook extra=() # purge "": the default list
  for hook in "${@:3}"; do extra+=(--customize-hook="$hook"); done
  args=(
    --variant=essential --include="$1" --format=directory
    --aptopt='Acquire::Check-Valid-Until "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
    --customize-hook="chroot \"\$1\" dpkg --purge $purge >/dev/null"
    "${extra[@]}"
    # the runtime user of the Dockerfile (akson, 10001:10001, no home, no shell)
    --customize-hook='echo "akson:x:10001:10001:akson:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"'
    --customize-hook='echo "akson:x:10001:" >> "$1/etc/group"'
    --customize-hook='echo "akson:!*:20089::::::" >> "$1/etc/shadow"'
    # nothing of the build host in the image: the runtime mounts resolv.conf, hostname, hosts
    --customize-hook='rm -rf "$1"/root/.[!.]* "$1"/var/cache/* "$1"/var/log/* "$1"/var/lib/apt/lists/*'
    --customize-hook=': > "$1/etc/resolv.conf"; : > "$1/etc/hostname"; chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"'
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package}\t\${Version}\n" > "$1.packages.tsv"'
    bookworm
  )
}

# a Debian root filesystem with these packages (and Debian's essential set), cached by its recipe
debian_rootfs() { # name packages [purge [hooks...]] -> prints the directory; <dir>.tar beside it
  local key dir args
  mmdebstrap_args "${@:2}"
  key="$(printf '%s\n' "${args[@]}" "${debian_mirrors[@]}" "$SOURCE_DATE_EPOCH" | sha)"
  dir="$cache/$1-$key"
  if [[ ! -f "$dir.tar" ]]; then
    log "mmdebstrap bookworm ($2) into $dir"
    local started=$SECONDS
    rm -rf "$dir" "$dir.packages.tsv"
    "${heavy[@]}" mmdebstrap --quiet "${args[@]}" "$dir" "${debian_mirrors[@]}" >/dev/null
    layer_tar "$dir" "$dir.tar" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
      --exclude=./var/lib/apt/lists/*
    log "$1 done in $((SECONDS - started)) s: $(du -sh "$dir" | cut -f1), $(wc -l < "$dir.packages.tsv") packages"
  fi
  prune "$1-" "$dir"
  echo "$dir"
}

rootfs() { debian_rootfs rootfs "$debian_packages"; }


# Run a script as root inside a chroot of an overlay (lower dirs, left on top) whose changes land
# in $upper: the layer. The repository's inputs come in read-only at /tmp/build/in, uv's cache at
# /tmp/build/cache; neither is in the layer (checked: the upper dir may hold only /app).
in_overlay() { # lower upper input-dir script
  local lower="$1" upper="$2" input="$3" script="$4"
  rm -rf "$upper" "$upper.work" "$upper.merged"
  mkdir -p "$upper" "$upper.work" "$upper.merged"
  "${heavy[@]}" unshare --mount --propagation private -- bash -euo pipefail -c '
    m="$2.merged"
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$2.work" "$m"
    mkdir -p "$m/tmp/build/in" "$m/tmp/build/cache"
    mount --bind -o ro "$3" "$m/tmp/build/in"
    mount --bind "$4" "$m/tmp/build/cache"
    mount --rbind /dev "$m/dev"
    mount -t proc proc "$m/proc"
    mount --bind -o ro /etc/resolv.conf "$m/etc/resolv.conf"
    # this machine'"'"'s trust store (it may hold a local CA) for the downloads, not in the layer
    mount --bind -o ro "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$m/etc/ssl/certs/ca-certificates.crt"
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp/build SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
      UV_CACHE_DIR=/tmp/build/cache UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \
      UV_NO_PROGRESS=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt chroot "$m" /bin/bash -euo pipefail -c "$5"
  ' in_overlay "$lower" "$upper" "$input" "$("${uv[@]}" cache dir)" "$script" >&2
  rm -rf "$upper.work" "$upper.merged" "$upper/tmp/build"
  rmdir "$upper/tmp" 2>/dev/null || true
  local stray
  stray="$(cd "$upper" && find . -mindepth 1 -maxdepth 1 ! -name app)"
  [[ -z "$stray" ]] || { echo "layer $upper changed more than /app: $stray" >&2; return 1; }
  if [[ -n "$(find "$upper" \( -type c -o -type b \) -print -quit)" ]]; then
    echo "layer $upper deletes files (overlay whiteouts)" >&2; return 1
  fi
}

# Layer 2: /app/.venv with the locked third-party wheels (every service's, --no-dev)
venv_layer() { # rootfs -> prints upper dir; .tar beside it
  local root="$1" input key upper
  input="$(mktemp -d)"
  (cd "$repo" && "${uv[@]}" export --quiet --frozen --no-dev --all-packages --no-emit-workspace \
    --no-header --output-file "$input/requirements.txt")
  key="$( (basename "$root"; cat "$input/requirements.txt"; "${uv[@]}" --version; declare -f in_overlay venv_layer) | sha)"
  upper="$cache/venv-$key"
  if [[ ! -f "$upper.tar" ]]; then
    log "venv: $(grep -c '==' "$input/requirements.txt") locked packages into /app/.venv"
    local started=$SECONDS
    cp "$(python3 -c 'import uv; print(uv.find_uv_bin())')" "$input/uv"
    in_overlay "$root" "$upper" "$input" '
      /tmp/build/in/uv venv --quiet --python /usr/bin/python3.11 /app/.venv
      /tmp/build/in/uv pip install --quiet --python /app/.venv/bin/python --no-build --no-deps \
        --require-hashes -r /tmp/build/in/requirements.txt
      rm -f /app/.venv/.lock'
    layer_tar "$upper" "$upper.tar"
    log "venv done in $((SECONDS - started)) s: $(du -sh "$upper" | cut -f1)"
  fi
  rm -rf "$input"
  echo "$upper"
}

# Layer 3: the workspace packages (wheels built from services/, installed without dependencies)
code_layer() { # rootfs venv-upper -> prints upper dir; .tar beside it
  local root="$1" venv="$2" input key upper
  key="$( (basename "$venv"; cd "$repo" && find services pyproject.toml -type f \
      ! -path '*/__pycache__/*' ! -path '*/.*' | LC_ALL=C sort | xargs sha256sum; declare -f code_layer) | sha)"
  upper="$cache/code-$key"
  if [[ ! -f "$upper.tar" ]]; then
    local started=$SECONDS
    input="$(mktemp -d)"
    cp "$(python3 -c 'import uv; print(uv.find_uv_bin())')" "$input/uv"
    (cd "$repo" && for pkg in services/*/pyproject.toml; do
      "${heavy[@]}" "${uv[@]}" build --quiet --wheel --out-dir "$input/dist" "$(dirname "$pkg")"
    done) >&2
    log "code: $(ls "$input/dist" | tr '\n' ' ')"
    # uv records when it saw a local wheel (its ctime) in the installed dist-info: not reproducible
    in_overlay "$venv:$root" "$upper" "$input" '
      /tmp/build/in/uv pip install --quiet --python /app/.venv/bin/python --no-deps --offline \
        /tmp/build/in/dist/*.whl
      for info in /app/.venv/lib/python3.11/site-packages/akson_*.dist-info; do
        rm -f "$info/uv_cache.json"; sed -i "/^akson_[a-z_]*-[^/]*\/uv_cache.json,/d" "$info/RECORD"
      done
      rm -f /app/.venv/.lock'
    layer_tar "$upper" "$upper.tar"
    rm -rf "$input"
    log "code done in $((SECONDS - started)) s: $(du -sh "$upper" | cut -f1)"
  fi
  echo "$upper"
}


# ---------------------------------------------------------------------------------------------
# Images: layers are pushed once to a registry of our own on 127.0.0.1 (crane registry serve,
# in memory, for the run), each image's config is set with crane mutate and written out as
# a docker-archive tarball named by the reference the chart renders.
crane_bin="" registry=""
registry_start() {
  [[ -z "$registry" ]] || return 0
  crane_bin="$("$repo/infra/tools/build.sh" crane | cut -d' ' -f2)"
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$crane_bin" registry serve --address "127.0.0.1:$port" 2>"$cache/registry.log" &
  registry_pid=$!
  trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { registry="127.0.0.1:$port"; return 0; }
    sleep 0.1
  done
  echo "crane registry serve did not listen on 127.0.0.1:$port" >&2; return 1
}

# the image references the chart renders with its defaults (helm template)
chart_refs() {
  local helm
  helm="$("$repo/infra/tools/build.sh" helm | cut -d' ' -f2)"
  "$helm" template akson "$repo/charts/akson" | sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | sort -u
}

# mutate base -> config -> tarball $out/<name>-<tag>.tar; "ref digest size file image-id" in images.tsv
write_image() { # base-ref ref mutate-args...
  local base="$1" ref="$2"; shift 2
  local name="${ref##*/}" file
  file="$out/${name//:/-}.tar"
  "$crane_bin" mutate "$base" --set-platform linux/amd64 -t "$ref" -o "$file.tmp" "$@" >/dev/null
  mv "$file.tmp" "$file"
  local line
  # the image id (config digest) is what containerd and crictl show; the manifest digest is the
  # one a registry gets from `crane push` (ctr import writes a manifest of its own)
  local id
  id="$(tar -xOf "$file" manifest.json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Config"])')"
  line="$(printf '%s\t%s\t%s\t%s\t%s' "$ref" "$("$crane_bin" digest --tarball "$file")" "$(stat -c %s "$file")" "$file" "$id")"
  { grep -v -F "$ref"$'\t' "$out/images.tsv" 2>/dev/null || true; echo "$line"; } | sort > "$out/images.tsv.tmp"
  mv "$out/images.tsv.tmp" "$out/images.tsv"
  echo "$line"
}

# the layers' tarballs as one image in our registry (cached there by the layers' names)
push_layers() { # name tarballs... -> prints the reference
  local name="$1" tag; shift
  tag="$(basename -a "$@" | sha)"
  local ref="$registry/akson-build/$name:$tag"
  if ! "$crane_bin" manifest "$ref" >/dev/null 2>&1; then
    local args=() t
    for t in "$@"; do args+=(-f "$t"); done
    "${heavy[@]}" "$crane_bin" append --oci-empty-base "${args[@]}" -t "$ref" >/dev/null 2>"$cache/append.log" \
      || { cat "$cache/append.log" >&2; return 1; }
  fi
  echo "$ref"
}


services() {
  local started=$SECONDS root venv code base refs svc ref
  root="$(rootfs)"; venv="$(venv_layer "$root")"; code="$(code_layer "$root" "$venv")"
  prune venv- "$venv"; prune code- "$code"
  registry_start
  base="$(push_layers services "$root.tar" "$venv.tar" "$code.tar")"
  refs="$(chart_refs)"
  for svc in $(cd "$repo/services" && ls -d */*/main.py | cut -d/ -f2); do
    ref="$(grep -E "/[^/]*${svc}:[^:/]+$" <<<"$refs")" \
      || { echo "the chart renders no image for service $svc" >&2; return 1; }
    # as the Dockerfile's runtime stage (CMD through sh: uvicorn is PID 1 by exec)
    write_image "$base" "$ref" -u 10001:10001 -w /app \
      -e PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      -e LANG=C.UTF-8 -e PYTHONDONTWRITEBYTECODE=1 -e PYTHONUNBUFFERED=1 -e "AKSON_SERVICE=$svc" \
      --exposed-ports 8000/tcp -l "org.opencontainers.image.title=akson-$svc" \
      --cmd 'sh,-c,"exec uvicorn ""${AKSON_SERVICE}.main:app"" --host 0.0.0.0 --port 8000 --no-access-log --proxy-headers"'
  done
  log "service images in $((SECONDS - started)) s"
}


# ---------------------------------------------------------------------------------------------
# Static Go binaries (CGO_ENABLED=0, infra/tools/build.sh) on a minimal base as distroless's
# static:nonroot: passwd/group with nonroot 65532, the CA bundle and zoneinfo of the Debian root
# filesystem above, /tmp; the binary at /<name> is the entrypoint.
static_base() { # -> prints the base layer tarball
  local root dir key
  root="$(rootfs)"
  key="$( (basename "$root"; declare -f static_base) | sha)"
  dir="$cache/static-base-$key"
  if [[ ! -f "$dir.tar" ]]; then
    rm -rf "$dir"; mkdir -p "$dir/etc/ssl/certs" "$dir/usr/share" "$dir/tmp"
    chmod 1777 "$dir/tmp"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
      'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > "$dir/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' > "$dir/etc/group"
    echo 'hosts: files dns' > "$dir/etc/nsswitch.conf"
    cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$dir/etc/ssl/certs/"
    cp -a "$root/usr/share/zoneinfo" "$dir/usr/share/"
    chmod 0644 "$dir"/etc/*
    layer_tar "$dir" "$dir.tar" --owner=0 --group=0
    rm -rf "$dir"
  fi
  prune static-base- "$dir"
  echo "$dir.tar"
}

static_image() { # binary ref
  local binary="$1" ref="$2" name dir key base
  name="$(basename "$binary")"
  key="$( (sha256sum < "$binary"; echo "$name") | sha)"
  dir="$cache/bin-$name-$key"
  if [[ ! -f "$dir.tar" ]]; then
    rm -rf "$dir"; mkdir -p "$dir"
    install -m 0755 "$binary" "$dir/$name"
    layer_tar "$dir" "$dir.tar" --owner=0 --group=0
    rm -rf "$dir"
  fi
  prune "bin-$name-" "$dir"
  base="$(push_layers "$name" "$(static_base)" "$dir.tar")"
  write_image "$base" "$ref" -u 65532:65532 -w / --entrypoint "/$name" \
    -e PATH=/usr/local/bin:/usr/bin:/bin -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    -l "org.opencontainers.image.title=$name"
}

tool() { "${heavy[@]}" "$repo/infra/tools/build.sh" "$1" | cut -d' ' -f2; }

static() {
  local started=$SECONDS opa_ref dapr_version
  registry_start
  # OPA as the chart's opa.workload.image.ref; daprd as Dapr's injector names the sidecar
  opa_ref="$(chart_refs | grep -E '/opa:[^/]+$')"
  static_image "$(tool opa)" "$opa_ref"
  dapr_version="$(cd "$repo/infra/tools/daprd" && go list -m -f '{{.Version}}' github.com/dapr/dapr)"
  static_image "$(tool daprd)" "ghcr.io/dapr/daprd:${dapr_version#v}"
  log "opa and daprd images in $((SECONDS - started)) s"
}

# Dapr's control plane, named as its Helm chart (charts/dapr of the same module) renders them:
# {global.registry}/{name}:{global.tag}, registry ghcr.io/dapr, tag the release (1.18.2)
dapr() {
  local started=$SECONDS bin version name
  registry_start
  version="$(cd "$repo/infra/tools/dapr-control-plane" && go list -m -f '{{.Version}}' github.com/dapr/dapr)"
  [[ "$version" == "$(cd "$repo/infra/tools/daprd" && go list -m -f '{{.Version}}' github.com/dapr/dapr)" ]] \
    || { echo "dapr-control-plane and daprd pin different github.com/dapr/dapr versions" >&2; return 1; }
  bin="$(tool dapr-control-plane)"
  for name in operator injector sentry placement scheduler; do
    static_image "$bin/$name" "ghcr.io/dapr/$name:${version#v}"
  done
  log "Dapr control-plane images in $((SECONDS - started)) s"
}

# The chart's `helm test` pod (tests.image, default docker.io/curlimages/curl) runs
# `sh -c "curl ..."` as 10001: Debian's curl on the same recipe, named for what it is; install
# the chart with `--set tests.image=<this reference>`.
tests() {
  local started=$SECONDS root version base
  root="$(debian_rootfs curl-rootfs curl,ca-certificates,usr-is-merged)"
  version="$(awk -F'\t' '$1 == "curl" {print $2}' "$root.packages.tsv")" # 7.88.1-10+deb12u14
  version="${version#*:}"
  registry_start
  base="$(push_layers curl "$root.tar")"
  write_image "$base" "ghcr.io/akson-health/akson-curl:${version%%-*}" -u 10001:10001 -w / \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -e LANG=C.UTF-8 \
    -l "org.opencontainers.image.title=akson-curl" --cmd curl
  log "curl image (helm test) in $((SECONDS - started)) s"
}

# The data services of the single-node cluster (infra/k8s/data.sh), each on the same mmdebstrap
# recipe as curl, run as akson (10001; initdb needs a passwd entry for its uid), named for what
# they are (Debian's version): redis-server, PostgreSQL 15 (/usr/lib/postgresql/15/bin on PATH),
# and FerretDB v1 (static, on the static base, 65532).
data() {
  local started=$SECONDS root version base
  registry_start
  # the files Debian leaves to the redis user are root's (the user cannot change its config)
  root="$(debian_rootfs redis-rootfs redis-server,usr-is-merged "" \
    'chown -R 0:0 "$1"/etc/redis "$1"/var/lib/redis "$1"/var/log/redis')"
  version="$(awk -F'\t' '$1 == "redis-server" {print $2}' "$root.packages.tsv")" # 5:7.0.15-1~deb12u10
  version="${version#*:}"
  base="$(push_layers redis "$root.tar")"
  write_image "$base" "ghcr.io/akson-health/akson-redis:${version%%-*}" -u 10001:10001 -w / \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -e LANG=C.UTF-8 \
    --exposed-ports 6379/tcp -l "org.opencontainers.image.title=akson-redis" --entrypoint /usr/bin/redis-server
  # postgresql-common needs perl (it stays); the cluster its postinst made (15/main, with
  # ssl-cert's snakeoil key) goes: the pod's init container runs initdb into its volume
  root="$(debian_rootfs postgres-rootfs postgresql-15,usr-is-merged \
    "usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl" \
    'rm -rf "$1"/etc/postgresql/15 "$1"/var/lib/postgresql/15 "$1"/etc/ssl/private/ssl-cert-snakeoil.key "$1"/etc/ssl/certs/ssl-cert-snakeoil.pem' \
    'chown -R 0:0 "$1"/etc/postgresql "$1"/var/lib/postgresql "$1"/var/log/postgresql "$1"/var/run/postgresql "$1"/etc/ssl/private; chmod 0755 "$1"/var/lib/postgresql')"
  version="$(awk -F'\t' '$1 == "postgresql-15" {print $2}' "$root.packages.tsv")" # 15.20-0+deb12u1
  base="$(push_layers postgres "$root.tar")"
  write_image "$base" "ghcr.io/akson-health/akson-postgres:${version%%-*}" -u 10001:10001 -w / \
    -e PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -e LANG=C.UTF-8 -e PGDATA=/var/lib/postgresql/data \
    --exposed-ports 5432/tcp -l "org.opencontainers.image.title=akson-postgres" --cmd postgres
  local ferretdb; ferretdb="$(tool ferretdb)"
  version="$("$ferretdb" --version | awk '$1 == "version:" {print $2}')" # v1.24.2
  static_image "$ferretdb" "ghcr.io/akson-health/akson-ferretdb:${version#v}"
  log "data images (redis, postgres, ferretdb) in $((SECONDS - started)) s"
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] || {
  [[ $# -gt 0 ]] || set -- all
  [[ "$*" == *all* ]] && set -- services static dapr tests data
  mkdir -p "$out"
  for what in "$@"; do
    case "$what" in
      rootfs) rootfs ;;
      services) services ;;
      static) static ;;
      dapr) dapr ;;
      tests) tests ;;
      data) data ;;
      layers) r="$(rootfs)"; v="$(venv_layer "$r")"; code_layer "$r" "$v" ;;
      *) echo "unknown: $what" >&2; exit 2 ;;
    esac
  done
}
