#!/usr/bin/env bash
# Install everything (Python packages into .venv, Debian's chromium for the browser test) and run all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
# lora_core itself, so that it imports from any folder (the validation workers' forkserver, `python -m lora_core`).
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install Debian's chromium; the browser test will be skipped" >&2
  else
    echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser test will be skipped" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
