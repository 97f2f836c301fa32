#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment in .venv, from any working directory.
# Idempotent: a second run only checks that everything is installed.
#   bash scripts/setup.sh            # then .venv/bin/python, .venv/bin/streamlit, .venv/bin/itd
# PYTHON=python3.11 bash scripts/setup.sh picks the interpreter that creates the venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi

PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# requirements.txt holds every pin (runtime + tests); the project itself goes in editable, without
# re-resolving dependencies, so the `itd` command and the packages point at this tree.
"${PIP[@]}" install -r requirements.txt
"${PIP[@]}" install -e . --no-deps
echo "setup: .venv ready ($(.venv/bin/python --version 2>&1))"
