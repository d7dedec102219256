#!/usr/bin/env bash
# Installs the system packages moepack builds against (Debian/Ubuntu).
# Safe to run more than once.
set -euo pipefail
packages=(libzstd-dev libopenblas-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
echo "moepack system dependencies are installed: ${packages[*]}"
