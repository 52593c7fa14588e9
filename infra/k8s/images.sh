#!/usr/bin/env bash
# The two images the cluster itself needs, packed with crane (no container engine), one image
# tarball path printed per line (for `ctr -n k8s.io images import`):
#   pause    registry.k8s.io/pause:3.10.2   kubernetes' build/pause/linux/pause.c, gcc -static (the sandbox image)
#   agnhost  registry.k8s.io/e2e-test-images/agnhost:akson-1.37.2   test/images/agnhost of the same build
# Both run as a non-root user. Cached in ~/.cache/akson/cluster-images, keyed by the inputs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${AKSON_CLUSTER_IMAGES:-$HOME/.cache/akson/cluster-images}"
mkdir -p "$out"
crane=$("$repo/infra/tools/build.sh" crane | awk '{print $2}')
k8s=$("$repo/infra/tools/build-cluster.sh" kubernetes | awk '{print $2}')
k8s_src=$(cd "$repo/infra/tools/kubernetes" && go mod download -json k8s.io/kubernetes | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')

pause_ref=registry.k8s.io/pause:3.10.2
agnhost_ref=registry.k8s.io/e2e-test-images/agnhost:akson-1.37.2
key=$(cat "$k8s_src/build/pause/linux/pause.c" "$k8s/agnhost" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
pause_tar=$out/pause-3.10.2-$key.tar
agnhost_tar=$out/agnhost-1.37.2-$key.tar

if [[ ! -f $pause_tar || ! -f $agnhost_tar ]]; then
  work=$(mktemp -d)
  registry_pid=
  # on failure, crane's log (it logs every pushed blob) is shown
  # shellcheck disable=SC2154
  trap 'rc=$?; ((rc)) && cat "$work/crane.log" >&2; [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; exit $rc' EXIT
  # a throw-away in-memory registry on 127.0.0.1 for crane append/mutate, stopped on exit
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  reg=127.0.0.1:$port

  layer() { # dir -> layer tarball, root-owned, fixed mtime
    tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$1.tar" -C "$1" .
  }
  # pause: as kubernetes' build/pause Makefile (-Os -Wall -Werror -static)
  mkdir -p "$work/pause"
  nice -n 19 gcc -Os -Wall -Werror -static -DVERSION=v3.10.2-akson -o "$work/pause/pause" "$k8s_src/build/pause/linux/pause.c"
  strip "$work/pause/pause"
  layer "$work/pause"
  "$crane" append --oci-empty-base -f "$work/pause.tar" -t "$reg/pause:3.10.2" >/dev/null 2>>"$work/crane.log"
  "$crane" mutate "$reg/pause:3.10.2" --entrypoint /pause --user 65535:65535 --set-platform linux/amd64 \
    -t "$pause_ref" -o "$pause_tar.tmp" >/dev/null
  mv "$pause_tar.tmp" "$pause_tar"
  # agnhost: the binary alone (static Go), as the e2e image's entrypoint, non-root
  mkdir -p "$work/agnhost"
  cp "$k8s/agnhost" "$work/agnhost/agnhost"
  layer "$work/agnhost"
  "$crane" append --oci-empty-base -f "$work/agnhost.tar" -t "$reg/agnhost:1.37.2" >/dev/null 2>>"$work/crane.log"
  "$crane" mutate "$reg/agnhost:1.37.2" --entrypoint /agnhost --user 65534:65534 --set-platform linux/amd64 \
    -t "$agnhost_ref" -o "$agnhost_tar.tmp" >/dev/null
  mv "$agnhost_tar.tmp" "$agnhost_tar"
  echo "packed $(du -h "$pause_tar" | cut -f1) pause, $(du -h "$agnhost_tar" | cut -f1) agnhost in $out" >&2
fi
echo "$pause_tar"
echo "$agnhost_tar"
