#!/usr/bin/env bash
# The project's habits, checked in seconds before the tests: lint, formatting, types, import layering
# (scripts/check_imports.py: no import cycle between packages, the layers of the README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m ruff check src tests benchmarks scripts examples
"$PY" -m ruff format --check --quiet src tests benchmarks scripts examples
"$PY" -m mypy src
"$PY" scripts/check_imports.py
