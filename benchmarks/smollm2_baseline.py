"""SmolLM2-135M-Instruct's baseline on the math generators, before any training.

For each task set (a generator at a difficulty): pass@1, pass@8 and maj@8 with
flexible answer extraction ("the answer is X", else the last number, as
lm-evaluation-harness's flexible-extract), pass@1 with strict extraction
(``\\boxed{}`` / ``<answer>`` only; the same samples re-scored), the format rate
(share of samples with a strict answer), the mean length and the truncated
share. Sampling as in training: temperature 1, the env's default prompt
("... put your final answer within \\boxed{}") in the model's chat template.

Usage:  python benchmarks/smollm2_baseline.py [--tasks 50] [--n 8] [--max-new-tokens 128]
Prints a markdown table for benchmarks/RESULTS.md; samples go under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import thinkgym
from thinkgym.rewards.math_answer import math_reward
from thinkgym.trainer.evaluation.options import EvalOptions
from thinkgym.trainer.evaluation.evaluate import evaluate_model
from thinkgym.trainer.sampling import Sampling

TASK_SETS = {
    "1-digit a+b": {"generator": "arithmetic", "difficulty": {"digits": 1, "terms": 2, "ops": "+"}},
    "1-digit a op b (+-*)": {"generator": "arithmetic", "difficulty": {"digits": 1, "terms": 2, "ops": "+-*"}},
    "2-digit a+b": {"generator": "arithmetic", "difficulty": {"digits": 2, "terms": 2, "ops": "+"}},
    "2-digit a op b (+-)": {"generator": "arithmetic", "difficulty": {"digits": 2, "terms": 2, "ops": "+-"}},
    "linear equation (coef <= 5, x <= 10)": {"generator": "linear_equation",
                                            "difficulty": {"max_coefficient": 5, "max_solution": 10}},
}


def strict_pass_at_1(samples_path: Path, env) -> float:
    """The share of samples correct under strict extraction (re-scored from samples.jsonl)."""
    rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
    gold = [env.unwrapped.task_by_id(r["task_id"])["answer"] for r in rows]
    return sum(math_reward(r["completion"], answer) for r, answer in zip(rows, gold)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50, help="tasks per task set")
    parser.add_argument("--n", type=int, default=8, help="samples per task")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], help="task set name (repeatable; default: all)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="smollm2-baseline-"))
    rows = []
    for name, spec in TASK_SETS.items():
        if args.only and name not in args.only:
            continue
        env_args = {**spec, "answer_extraction": "flexible", "seed": 0}
        env = thinkgym.make("thinkgym/Math-v0", **env_args)
        options = EvalOptions(model="smollm2-135m-instruct", env="thinkgym/Math-v0", env_args=env_args, n=args.n,
                              ks=(1, args.n), sampling=Sampling(1.0, 1.0, args.max_new_tokens), limit=args.tasks,
                              threads=args.threads, workers=1)
        folder = out / name.replace(" ", "_").replace("/", "")
        started = time.perf_counter()
        s = evaluate_model(options, env, folder, log=lambda line: None)
        rows.append((name, s["pass@k"]["1"], s["pass@k"][str(args.n)], s["maj@k"][str(args.n)],
                     strict_pass_at_1(folder / "samples.jsonl", env), s["format_rate"], s["length_mean"],
                     s["truncated_fraction"], time.perf_counter() - started))
        print(f"{name}: {rows[-1]}", flush=True)
    print(f"\nSmolLM2-135M-Instruct, {args.tasks} tasks x {args.n} samples, temperature 1, max {args.max_new_tokens} "
          f"new tokens; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}\n")
    print(f"| task set | pass@1 | pass@{args.n} | maj@{args.n} | strict pass@1 | format rate | length | truncated | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, p1, pn, mn, strict, fmt, length, trunc, wall in rows:
        print(f"| {name} | {p1:.1%} | {pn:.1%} | {mn:.1%} | {strict:.1%} | {fmt:.1%} | {length:.0f} | {trunc:.0%} "
              f"| {wall:.0f} s |")


if __name__ == "__main__":
    main()
