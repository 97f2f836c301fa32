#!/usr/bin/env bash
# Lint: ruff's short rule set and import-linter's layer contracts (both configured in pyproject.toml).
#   bash scripts/lint.sh        # after scripts/setup.sh; .ci/run runs it before the tests
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/ruff check .
.venv/bin/lint-imports
