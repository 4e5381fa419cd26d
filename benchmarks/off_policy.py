"""One step off-policy (``train.off_policy_steps: 1``) next to on-policy, one run.

The same recipe is trained twice from the same cached model, one run after the
other: on-policy as configured, then with step s+1's rollouts sampled in a
thread (from a copy of step s's weights) while step s trains, corrected by
truncated importance sampling (``sampling.tis_cap``). Reported for each: the
held-out accuracy before and after, the mean step time (the first step, which
samples on-policy in both, left out), the run's wall time, the peak resident
memory, and for the off-policy run the rollout/trainer log-prob gap, which now
holds one optimizer step of staleness.

Usage:  python benchmarks/off_policy.py [--recipe tiny|smollm2] [--steps N] [--set KEY=VALUE ...]
            [--off-set KEY=VALUE ...]   (the off-policy run only, e.g. train.cpu_threads=1)
Prints the figures and markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ppo_vs_grpo import WITH_PEAK

CONFIGS = Path(__file__).parents[1] / "configs"
RECIPES = {"tiny": (CONFIGS / "tiny.yaml", "tiny"), "smollm2": (CONFIGS / "smollm2_grpo.yaml", "smollm2-135m-instruct")}
OFF_POLICY = ["train.off_policy_steps=1", "sampling.tis_cap=2.0"]


def run(config: Path, overrides: list[str], out: Path) -> dict:
    peak_file = out.with_suffix(".peak")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WITH_PEAK, str(peak_file), "train", "--config", str(config),
                           "--set", f"output.dir={out}", *[f"--set={o}" for o in overrides]])
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{config.name} {overrides} failed with exit code {done.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    before = 100 * statistics.mean(summary["before"].values())
    after = 100 * statistics.mean(summary["after"].values())
    gaps = [r["rollout_logprob_gap/mean"] for r in rows[1:] if "rollout_logprob_gap/mean" in r]
    return {"before": before, "after": after, "gain": after - before, "wall": wall,
            "step": statistics.mean(r["time/step"] for r in rows[1:]),
            "generate": statistics.mean(r["time/generate"] for r in rows[1:]),
            "update": statistics.mean(r["time/update"] for r in rows[1:]),
            "staleness": statistics.mean(r.get("rollout/staleness", 0) for r in rows[1:]),
            "gap": statistics.mean(gaps) if gaps else float("nan"),
            "reward_last_quarter": statistics.mean(r["reward/mean"] for r in rows[-max(1, len(rows) // 4):]),
            "peak": int(peak_file.read_text()) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="train.steps (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for both runs")
    parser.add_argument("--off-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the off-policy run only")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a fresh temporary one)")
    args = parser.parse_args()
    config, model = RECIPES[args.recipe]
    out = Path(args.out or tempfile.mkdtemp(prefix="thinkgym-off-policy-"))
    common = [*args.set, *([f"train.steps={args.steps}"] if args.steps else [])]
    # Build (or convert) the model first, so neither run's wall time includes it.
    subprocess.run([sys.executable, "-c", f"from thinkgym.trainer.models.builtin import resolve_model; "
                                          f"resolve_model({model!r})"], check=True)
    results = {"on-policy": run(config, common, out / "on"), "one step off-policy": run(config, common + OFF_POLICY + args.off_set,
                                                                                       out / "off")}
    print(f"\n{config.name} {' '.join(common)}" + (f"; off-policy run: {' '.join(args.off_set)}" if args.off_set else ""))
    print("| rollouts | held-out before | after | gain (points) | step time | generate | update | wall time "
          "| staleness | log-prob gap | reward, last quarter | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['before']:.1f}% | {r['after']:.1f}% | {r['gain']:+.1f} | {r['step']:.2f} s "
              f"| {r['generate']:.2f} s | {r['update']:.2f} s | {r['wall']:.0f} s | {r['staleness']:.2f} "
              f"| {r['gap']:.1e} | {r['reward_last_quarter']:.3f} | {r['peak']:.0f} MiB |")
    on, off = results["on-policy"], results["one step off-policy"]
    print(f"off-policy / on-policy: step time {off['step'] / on['step']:.2f}x (speed-up {on['step'] / off['step']:.2f}x), "
          f"wall {off['wall'] / on['wall']:.2f}x, gain {off['gain'] - on['gain']:+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
