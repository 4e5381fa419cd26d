"""Every objective's tiny recipe next to Dr. GRPO, in one run.

Each recipe trains the cached tiny model from the same start, one after the other:
Dr. GRPO (configs/tiny.yaml), SFT on a stronger checkpoint's reward-filtered traces
(configs/sft_tiny.yaml), rejection-sampling fine-tuning
(configs/rejection_sampling_tiny.yaml), online iterated DPO (configs/dpo_tiny.yaml),
offline DPO (configs/dpo_offline_tiny.yaml) and a Bradley-Terry reward model
(configs/reward_model_tiny.yaml). Reported: the held-out score before and after
(accuracy on 200 unseen tasks; the reward model: pairwise accuracy on 284 held-out
pairs), the gain and the wall time, from the harness of benchmarks/ppo_vs_grpo.py.

Usage:  python benchmarks/post_training.py [--out DIR]
Prints markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from ppo_vs_grpo import CONFIGS, run

RECIPES = {  # name: (config, steps, what the score is)
    "Dr. GRPO": ("tiny.yaml", 100, "accuracy"),
    "SFT (distillation)": ("sft_tiny.yaml", 100, "accuracy"),
    "rejection sampling": ("rejection_sampling_tiny.yaml", 100, "accuracy"),
    "DPO, online iterated": ("dpo_tiny.yaml", 100, "accuracy"),
    "DPO, offline": ("dpo_offline_tiny.yaml", 100, "accuracy"),
    "reward model": ("reward_model_tiny.yaml", 400, "pairwise accuracy"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the runs (default: a fresh temporary one)")
    parser.add_argument("--only", nargs="*", default=None, help="run these recipes alone (names as above)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="thinkgym-post-training-"))
    subprocess.run([sys.executable, "-c", "from thinkgym.trainer.models.builtin import resolve_model; resolve_model('tiny')"],
                   check=True)  # built before the first run, so no wall time includes it
    print("| objective | recipe | steps | held-out score | before | after | gain (points) | wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, (name, (config, steps, score)) in enumerate(RECIPES.items()):
        if args.only and name not in args.only:
            continue
        r = run(CONFIGS / config, [], steps, out / f"run{i}")
        print(f"| {name} | `configs/{config}` | {steps} | {score} | {r['before']:.1f}% | {r['after']:.1f}% "
              f"| {r['gain']:+.1f} | {r['wall']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
