#!/usr/bin/env bash
# Runs the quick checks (scripts/check.sh: ruff, formatting, mypy), then the test suite on the CPU with 2
# threads (the size of the machines the suite is built for).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
bash scripts/check.sh
exec "${PYTHON:-python3}" -m pytest -q tests "$@"
