#!/usr/bin/env bash
# Set up (or refresh) the project virtual environment in .venv: pinned CPU torch for dev/CI,
# the package in editable mode with its dev extras. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The plain PyPI torch==2.13.0 wheel is the CPU build on these machines; GPU clusters install their own.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,train]"
