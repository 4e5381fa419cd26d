"""PPO with a critic next to Dr. GRPO on the tiny default, same budget, one run.

Both train the tiny model on two-digit arithmetic for the same number of steps,
each step 16 prompts x 8 completions (configs/tiny.yaml: Dr. GRPO, the embedded
default; configs/ppo_tiny.yaml: PPO, GAE on a critic's values, the KL in the
reward), from the same cached model, one after the other, and report the
held-out accuracy gain and the wall time of each, and their ratio.

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
RUNS = {"Dr. GRPO": CONFIGS / "tiny.yaml", "PPO (critic)": CONFIGS / "ppo_tiny.yaml"}


def run(config: Path, steps: int, out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--config", str(config),
                           "--set", f"train.steps={steps}", "--set", f"output.dir={out}"])
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{config.name} failed with exit code {done.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    before = sum(summary["before"].values()) / len(summary["before"])
    after = sum(summary["after"].values()) / len(summary["after"])
    return {"before": 100 * before, "after": 100 * after, "gain": 100 * (after - before), "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=None, help="folder for the runs (default: a fresh temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="thinkgym-ppo-vs-grpo-"))
    # Build (or find) the tiny model first, so neither run's wall time includes it.
    subprocess.run([sys.executable, "-c", "from thinkgym.trainer.models.builtin import resolve_model; resolve_model('tiny')"],
                   check=True)
    results = {name: run(config, args.steps, out / config.stem) for name, config in RUNS.items()}
    print(f"\n{args.steps} steps of 16 prompts x 8 completions, 200 held-out tasks (sampling noise about +-3.5 points)")
    print("| objective | held-out before | after | gain (points) | wall time |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['before']:.1f}% | {r['after']:.1f}% | {r['gain']:+.1f} | {r['wall']:.0f} s |")
    grpo, ppo = results["Dr. GRPO"], results["PPO (critic)"]
    print(f"PPO / Dr. GRPO: wall time {ppo['wall'] / grpo['wall']:.2f}x, gain {ppo['gain'] - grpo['gain']:+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
