"""Padding work saved by length bucketing (``train.bucket_by_length``), on vs off.

Runs a few steps of the embedded default run (the tiny model, or any config with
``--config`` / ``--set``). Each step's batch is generated once; then the update
runs twice from the same weights, optimizer state and shuffle, once with
bucketing and once without, in alternating order (so neither side always gets
the warm caches), and the run goes on from the last one's weights. The old-policy
log-prob pass (``batch_logprobs``) of the same batch is timed both ways too.

Usage:  python benchmarks/padding.py [--steps 6] [--config FILE] [--set key=value ...]
Prints one line per step and the medians, with a markdown row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from thinkgym.trainer import distributed
from thinkgym.trainer.config import Config, load_config
from thinkgym.trainer.accumulate import make_optimizer
from thinkgym.trainer.collect import TaskSampler, batch_logprobs
from thinkgym.trainer.grpo import collect_grpo_batch
from thinkgym.trainer.models.policy import Policy, load_policy, load_reference
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.run import make_envs, resolve_device
from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.engines import make_engine


def with_bucketing(config: Config, on: bool) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, bucket_by_length=on))


def timed_update(module, optimizer, scheduler, batch, config, rng, state, on: bool) -> dict:
    """One update from ``state`` (weights, optimizer, scheduler) with bucketing ``on``."""
    module.model.load_state_dict(state[0])
    optimizer.load_state_dict(state[1])
    scheduler.load_state_dict(state[2])
    start = time.perf_counter()
    stats = update_policy(module, optimizer, scheduler, batch, with_bucketing(config, on), rng)
    return {"update_s": time.perf_counter() - start, **stats}


def timed_logprobs(model, batch, config: Config, on: bool) -> float:
    start = time.perf_counter()
    batch_logprobs(model, batch.rollouts, config.train.micro_batch_size, config.sampling.temperature, on)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--config", default=None, help="a YAML config (default: the embedded default run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override")
    args = parser.parse_args()
    config = load_config(args.config, [f"output.dir={tempfile.mkdtemp(prefix='thinkgym-padding-')}", *args.overrides])
    t = config.train
    device = resolve_device(t.device)
    if t.cpu_threads:
        torch.set_num_threads(t.cpu_threads)
    torch.manual_seed(t.seed)
    algo = config.algorithm.resolve()
    envs = make_envs(config, held_out=False)
    sampler = TaskSampler(envs, [e.weight for e in config.envs], t.seed, set())
    base_path = resolve_model(config.model.path)
    model, tokenizer = load_policy(config.model, base_path, None, device)
    reference = load_reference(config.model, base_path, model, device) if algo.beta > 0 else None
    module = distributed.wrap(model, device)
    policy = Policy(model, tokenizer, make_engine(config.sampling.engine, model, tokenizer), reference)
    optimizer = make_optimizer(model, t.lr, t.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (t.warmup_steps + 1)))
    shuffle_rng = torch.Generator().manual_seed(t.seed)
    rows = {True: [], False: []}
    print(f"{t.prompts_per_step * t.group_size} completions/step, micro-batch {t.micro_batch_size}, "
          f"max_new_tokens {config.sampling.max_new_tokens}, device {device}")
    for step in range(args.steps):
        batch = collect_grpo_batch(step, config, policy, sampler, t.score_workers or None)
        state = copy.deepcopy((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()))
        rng_state = shuffle_rng.get_state()
        order = (True, False) if step % 2 else (False, True)
        for on in order:
            rng = torch.Generator().set_state(rng_state)  # the same mini-batches both ways
            row = timed_update(module, optimizer, scheduler, batch, config, rng, state, on)
            row["logprobs_s"] = timed_logprobs(model, batch, config, on)
            rows[on].append(row)
        shuffle_rng.set_state(rng.get_state())  # the run goes on from the last update
        on, off = rows[True][-1], rows[False][-1]
        print(f"step {step + 1}: update {off['update_s']:.2f} s -> {on['update_s']:.2f} s bucketed, "
              f"log-probs {off['logprobs_s']:.2f} s -> {on['logprobs_s']:.2f} s, "
              f"decoder tokens {on['tokens/full_width']} -> {on['tokens/computed']} "
              f"(saved {100 * on['tokens/padding_saved_frac']:.1f}%), "
              f"length mean {batch.metrics['length/mean']:.1f} max {batch.metrics['length/max']:.0f}")
    med = {on: {k: statistics.median(r[k] for r in rows[on]) for k in ("update_s", "logprobs_s")} for on in rows}
    saved = statistics.mean(r["tokens/padding_saved_frac"] for r in rows[True])
    speedup = med[False]["update_s"] / med[True]["update_s"]
    print(f"\nmedian update {med[False]['update_s']:.2f} s off -> {med[True]['update_s']:.2f} s on ({speedup:.2f}x); "
          f"log-probs {med[False]['logprobs_s']:.2f} s -> {med[True]['logprobs_s']:.2f} s; "
          f"decoder tokens saved {100 * saved:.1f}%")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {device}"
    print(f"\n| length bucketing | {args.steps} steps | update {med[False]['update_s']:.2f} s -> "
          f"{med[True]['update_s']:.2f} s ({speedup:.2f}x) | padding saved {100 * saved:.1f}% | {machine} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
