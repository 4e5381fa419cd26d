"""Rejection-sampling fine-tuning and distillation (``algorithm.objective:
rejection_sampling``), read top to bottom: "poor man's RL".

A step (a round):

1. samples ``train.group_size`` completions for each of ``train.prompts_per_step``
   prompts and scores them (:func:`collect_batch`), from the policy itself, or,
   with ``rejection.teacher``, from a teacher checkpoint: distillation of its
   reward-filtered traces into the policy (the student; same tokenizer);
2. keeps the completions whose reward is at least ``rejection.min_reward``, at
   most the ``rejection.top_k`` best of each prompt when set (:func:`kept_rows`);
3. fine-tunes on them (:func:`~thinkgym.trainer.sft.update_sft`: completion
   tokens only, ``train.epochs_per_batch`` passes in mini-batches of
   ``train.mini_batch_size``).

``rejection/kept_frac`` reports the share kept each round.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer import distributed
from thinkgym.trainer.collect import Batch, collect_batch
from thinkgym.trainer.engines import make_engine
from thinkgym.trainer.engines.rollouts import select
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy
from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.models.policy import Policy, load_model
from thinkgym.trainer.sft import update_sft
from thinkgym.trainer.typed_config import ConfigError


class RejectionSampling(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train`."""

    def __init__(self, run):
        self.run = run
        teacher = run.config.rejection.teacher
        self.sampler = run.policy if teacher is None else load_teacher(teacher, run.policy.tokenizer, run)

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run, r = self.run, self.run.config.rejection
        with distributed.full_params(run.module):  # FSDP: the policy samples from whole weights
            batch = collect_batch(step, run.config, self.sampler, run.sampler, run.workers)
        keep = kept_rows(batch.rewards, run.config.train.group_size, r.min_reward, r.top_k)
        stats = {"rejection/kept_frac": len(keep) / len(batch.rewards)}
        keep = keep[:min(distributed.gather(len(keep)))]  # every rank takes as many optimizer steps
        started = time.perf_counter()
        if len(keep):
            stats.update(update_sft(run, select(batch.rollouts, keep), batch.loss_mask[keep]))
        else:  # nothing good enough this round: the schedule moves on all the same
            run.scheduler.step()
        batch = dataclasses.replace(batch, loss_mask=batch.loss_mask[keep])
        return batch, {**stats, "time/update": time.perf_counter() - started}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """Nothing beyond the policy's state (a teacher is never trained)."""
        return {}, None


def kept_rows(rewards: torch.Tensor, group_size: int, min_reward: float, top_k: int = 0) -> torch.Tensor:
    """Indices, ascending, of the rows whose reward is at least ``min_reward`` and,
    with ``top_k`` > 0, among the ``top_k`` highest of their group of
    ``group_size`` consecutive rows (ties: the earlier row first)."""
    passing = rewards >= min_reward
    if top_k:
        grouped = rewards.view(-1, group_size)
        order = torch.sort(grouped, dim=1, descending=True, stable=True).indices
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(group_size).expand_as(order).contiguous())
        passing &= (ranks < top_k).view(-1)
    return passing.nonzero().squeeze(1)


def load_teacher(path: str, tokenizer, run) -> Policy:
    """The teacher as a sampling :class:`Policy` (no reference); its tokenizer must
    be the student's, since its tokens are trained on as they were sampled."""
    model, teacher_tokenizer = load_model(resolve_model(path), run.config.model.dtype, run.device)
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"rejection.teacher {path} has another tokenizer than model.path {run.config.model.path}; "
                          "distillation trains on the teacher's tokens as sampled, so they must share one")
    model.eval().requires_grad_(False)
    return Policy(model, tokenizer, make_engine(run.config.sampling.engine, model, tokenizer), None)
