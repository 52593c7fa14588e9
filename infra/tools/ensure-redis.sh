#!/usr/bin/env bash
# redis-server comes from the OS packages (Debian), installed when missing.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "installing redis-server from the OS packages" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq redis-server >/dev/null
# Debian starts a system instance on 6379; the platform runs its own, so stop that one.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  "${sudo_cmd[@]}" systemctl stop redis-server || true
fi
