#!/usr/bin/env bash
# Installs thinkgym, then runs the embedded default: builds the tiny model (once,
# cached), trains it with GRPO on CPU and prints held-out accuracy before/after.
# Extra arguments go to `thinkgym train` (e.g. --config configs/dapo.yaml --dry-run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
thinkgym train "$@"
