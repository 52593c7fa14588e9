#!/usr/bin/env bash
# PostgreSQL (the local backend of FerretDB) comes from the OS packages, installed when missing.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && exit 0
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "installing PostgreSQL from the OS packages" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq postgresql >/dev/null
# Debian starts a cluster of its own; the platform runs its own server per run folder.
if command -v systemctl >/dev/null && systemctl is-active --quiet postgresql 2>/dev/null; then
  "${sudo_cmd[@]}" systemctl stop postgresql || true
fi
