#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment in .venv, from any working directory.
#   bash scripts/setup.sh        # then .venv/bin/python, .venv/bin/streamlit, .venv/bin/itd
# Idempotent: when requirements.txt, pyproject.toml, the set of top-level packages and the Python are
# unchanged since the last successful run (stamp in .venv/.setup-stamp), it does nothing. Delete the
# stamp to force a re-install.
# PYTHON=python3.11 bash scripts/setup.sh picks the interpreter that creates the venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi

# The editable install maps each top-level package found at install time, so a new one needs a re-install.
packages="$(ls -d -- */__init__.py 2>/dev/null | tr '\n' ' ')"
stamp="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1) ${packages}$(.venv/bin/python --version 2>&1)"
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp" ]; then
    echo "setup: .venv up to date"
    exit 0
fi

# pip, quiet, minus the "Location ... is ignored" warnings that some machines' pip config (an
# extra local index that lacks most packages) prints once per package; pip's exit status is kept.
pip_q() {
    local err rc=0
    err="$(mktemp)"
    .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>"$err" || rc=$?
    grep -v "is ignored: it is neither a file nor a directory" "$err" >&2 || true
    rm -f "$err"
    return "$rc"
}

echo "setup: installing requirements.txt and the project (editable) into .venv"
pip_q install --upgrade pip
# requirements.txt holds every pin (runtime + tests); the project itself goes in editable, without
# re-resolving dependencies, so the packages and the `itd` command point at this tree.
pip_q install -r requirements.txt
pip_q install -e . --no-deps
echo "$stamp" > .venv/.setup-stamp
echo "setup: .venv ready ($(.venv/bin/python --version 2>&1))"
