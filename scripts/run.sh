#!/usr/bin/env bash
# Install the app into .venv and run it on the embedded defaults: SQLite and local storage under data/,
# local identity (one demo user), listening on http://127.0.0.1:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
# lora_core itself, so that it imports from any folder (the validation workers' forkserver, `python -m lora_core`).
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
exec .venv/bin/streamlit run app.py "$@"
