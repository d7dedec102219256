#!/usr/bin/env bash
# Installs what moepack builds and tests against (Debian/Ubuntu):
#   - system packages: libzstd-dev, libopenblas-dev, pkg-config (apt-get);
#   - a Python virtual environment in .venv with the packages of tools/requirements-ci.txt
#     (the `openai` client a test runs against `moepack serve`), from PyPI.
# Safe to run more than once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

packages=(libzstd-dev libopenblas-dev pkg-config)
# python3 with venv and pip (Debian splits them out of python3)
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  packages+=(python3 python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
echo "moepack system dependencies are installed: ${packages[*]}"

# Only the test suite needs these, so a machine without PyPI can still build and run moepack:
# a failed install is reported here and by the test that needs it (OpenAIClientTests).
venv="$root/.venv"
if ! "$venv/bin/python" -c "import openai, gguf" >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" &&
         "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/tools/requirements-ci.txt"; }; then
    rm -rf "$venv"
    echo "tools/setup.sh: warning: could not install tools/requirements-ci.txt from PyPI into $venv;" \
         "moepack builds and runs, but OpenAIClientTests will fail" >&2
    exit 0
  fi
fi
echo "Python test dependencies are installed in $venv: $(grep -v '^#' "$root/tools/requirements-ci.txt" | xargs)"
