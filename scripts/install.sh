#!/usr/bin/env bash
# Installs seqloom (editable) with its test extras. When no torch is importable it first installs
# torch==2.13.0, the CPU build that lies on this kind of machine's disk, so that pip never resolves a
# plain `torch` to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
