#!/usr/bin/env bash
# Installs what the tests need, then runs the whole suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
"$PYTHON" -m pytest -q "$@"
