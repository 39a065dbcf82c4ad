#!/usr/bin/env bash
# Create a virtual environment with pip in it, even on a Debian whose python3 lacks ensurepip.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if [ -x "$venv/bin/pip" ]; then exit 0; fi
if "$python" -m venv "$venv" 2>/dev/null; then exit 0; fi
rm -rf "$venv"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "python3 -m venv needs Debian's python3-venv; installing it" >&2
  minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt-get update -qq && apt-get install -y -qq "python${minor}-venv" || apt-get install -y -qq python3-venv
  "$python" -m venv "$venv"
  exit 0
fi
echo "error: '$python -m venv' failed; install your distribution's venv package (Debian: sudo apt-get install python3-venv)" >&2
exit 1
