"""Supervised fine-tuning on demonstrations (``algorithm.objective: sft``), read
top to bottom.

A step takes ``data.batch_size`` rows of ``data.path`` (prompt-completion or
chat ``messages``, :mod:`thinkgym.trainer.data`) in a seeded shuffled order and
minimises the completions' next-token loss, averaged over their tokens: the
prompt is context only. The rows go through the RL update's machinery (length
bucketing, micro-batches, the chunked log-prob head), so a step never holds a
``[N, T, vocab]`` float32 logit tensor. Rejection sampling and distillation
(``rejection_sampling.py``) reuse :func:`update_sft` on completions they sampled.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer import distributed
from thinkgym.trainer.accumulate import accumulate_and_step
from thinkgym.trainer.collect import Batch
from thinkgym.trainer.data import encode
from thinkgym.trainer.engines.rollouts import Rollouts
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy


class SFT(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train` (``run.data``: the demonstrations)."""

    def __init__(self, run):
        self.run = run

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run = self.run
        rollouts = file_batch(run, step)
        started = time.perf_counter()
        stats = update_sft(run, rollouts, rollouts.completion_mask)
        return demonstrations_batch(rollouts), {**stats, "time/update": time.perf_counter() - started}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        return {}, None


def file_batch(run, step: int) -> Rollouts:
    """This rank's share of step ``step``'s ``data.batch_size`` rows of ``run.data``,
    encoded (a pair's two completions consecutive)."""
    rows = run.data.batch(step, run.config.data.batch_size, run.config.train.seed, distributed.rank(),
                          distributed.world())
    return encode(run.policy.tokenizer, rows, run.device)


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean negative log-likelihood of the tokens where ``mask`` is 1
    (completions; the prompt and padding never count)."""
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1)


def update_sft(run, rollouts: Rollouts, loss_mask: torch.Tensor) -> dict[str, float]:
    """``train.epochs_per_batch`` passes of next-token loss over ``rollouts``
    (log-probs at temperature 1: the model's own distribution), then one
    scheduler step. ``sft/nll`` is the mean over the tokens trained on."""
    t = run.config.train

    def loss_fn(mb, mask):
        nll = sft_loss(run.module(*mb.inputs, 1.0, False)[0], mask)
        return nll, {"sft/nll": nll.detach()}

    stats = accumulate_and_step(run.module, run.optimizer, rollouts, loss_mask, loss_fn, agg="token-mean",
                                epochs=t.epochs_per_batch, mini_batch_size=t.mini_batch_size,
                                micro_batch_size=t.micro_batch_size, bucket=t.bucket_by_length,
                                max_grad_norm=t.max_grad_norm, rng=run.shuffle_rng)
    run.scheduler.step()
    return stats


def demonstrations_batch(rollouts: Rollouts) -> Batch:
    """A :class:`Batch` of rows from a file, for the step's log: their lengths, no rewards."""
    lengths = rollouts.completion_mask.sum(1).float()
    return Batch(rollouts, torch.zeros(0), rollouts.completion_mask, {"length/mean": lengths.mean().item(),
                                                                      "length/max": lengths.max().item()}, [])
