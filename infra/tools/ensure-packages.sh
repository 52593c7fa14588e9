#!/usr/bin/env bash
# The OS packages (Debian) the platform runs and is tested with, installed when missing:
#   ensure-packages.sh <package>=<probe> ...
# <probe> is a command on PATH or a path glob; the package is installed when the probe finds
# nothing. A package that starts a system service of its own name (redis-server, postgresql)
# has it stopped: the platform runs its own servers per run folder.
set -euo pipefail
missing=()
for pair in "$@"; do
  package=${pair%%=*} probe=${pair#*=}
  if [[ $probe == */* ]]; then
    compgen -G "$probe" >/dev/null && continue
  else
    command -v "$probe" >/dev/null && continue
  fi
  missing+=("$package")
done
((${#missing[@]})) || exit 0
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "installing ${missing[*]} from the OS packages" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$package" 2>/dev/null; then
    "${sudo_cmd[@]}" systemctl stop "$package" || true
  fi
done
