"""PPO with a critic next to Dr. GRPO on the tiny default, same budget, one run.

All train the tiny model on two-digit arithmetic for the same number of steps,
each step 16 prompts x 8 completions (configs/tiny.yaml: Dr. GRPO, the embedded
default; configs/ppo_tiny.yaml: PPO, GAE on a critic's values, the KL in the
reward; the same with ``critic.shared_trunk``, a value head on the policy's own
decoder), from the same cached model, one after the other, and report the
held-out accuracy gain, the wall time and the peak resident memory of each.

Usage:  python benchmarks/ppo_vs_grpo.py [--steps 100] [--out DIR]
Prints the figures and markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).parents[1] / "configs"
RUNS = {"Dr. GRPO": (CONFIGS / "tiny.yaml", []),
        "PPO (critic)": (CONFIGS / "ppo_tiny.yaml", []),
        "PPO (shared-trunk critic)": (CONFIGS / "ppo_tiny.yaml", ["critic.shared_trunk=true"])}


# Runs the CLI in this interpreter and writes its own peak resident memory (KiB) to argv[1] on the way out.
WITH_PEAK = ("import resource, runpy, sys\n"
             "peak_file = sys.argv.pop(1)\n"
             "try:\n"
             "    runpy.run_module('thinkgym', run_name='__main__', alter_sys=True)\n"
             "finally:\n"
             "    open(peak_file, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n")


def run(config: Path, overrides: list[str], steps: int, out: Path) -> dict:
    peak_file = out.with_suffix(".peak")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WITH_PEAK, str(peak_file), "train", "--config", str(config),
                           "--set", f"train.steps={steps}", "--set", f"output.dir={out}",
                           *[f"--set={o}" for o in overrides]])
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{config.name} failed with exit code {done.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    before = sum(summary["before"].values()) / len(summary["before"])
    after = sum(summary["after"].values()) / len(summary["after"])
    peak = int(peak_file.read_text()) / 1024  # the trainer's process; scoring workers are processes of their own
    return {"before": 100 * before, "after": 100 * after, "gain": 100 * (after - before), "wall": wall, "peak": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=None, help="folder for the runs (default: a fresh temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="thinkgym-ppo-vs-grpo-"))
    # Build (or find) the tiny model first, so neither run's wall time includes it.
    subprocess.run([sys.executable, "-c", "from thinkgym.trainer.models.builtin import resolve_model; resolve_model('tiny')"],
                   check=True)
    results = {name: run(config, overrides, args.steps, out / f"run{i}")
               for i, (name, (config, overrides)) in enumerate(RUNS.items())}
    print(f"\n{args.steps} steps of 16 prompts x 8 completions, 200 held-out tasks (sampling noise about +-3.5 points)")
    print("| objective | held-out before | after | gain (points) | wall time | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['before']:.1f}% | {r['after']:.1f}% | {r['gain']:+.1f} | {r['wall']:.0f} s "
              f"| {r['peak']:.0f} MiB |")
    grpo = results["Dr. GRPO"]
    for name in ("PPO (critic)", "PPO (shared-trunk critic)"):
        ppo = results[name]
        print(f"{name} / Dr. GRPO: wall time {ppo['wall'] / grpo['wall']:.2f}x, gain {ppo['gain'] - grpo['gain']:+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
