#!/usr/bin/env bash
# Installs thinkgym (editable) with its test extras. Sourced by train.sh and test.sh.
# torch: an already installed build (e.g. a CUDA one on a GPU box) is kept; otherwise
# torch==2.13.0 is installed (on a CPU-only machine with the local CPU wheel, that one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install -q "torch==2.13.0"
fi
"$PYTHON" -m pip install -q -e ".[dev]"
