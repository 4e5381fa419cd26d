"""The group-relative objectives (GRPO, Dr. GRPO, DAPO, RLOO, GSPO, CISPO), read
top to bottom: ``algorithm.objective: grpo``, every preset but ``ppo``.

A step:

1. collects B prompts x G completions and their rewards (:func:`collect_batch`;
   under dynamic sampling, only groups whose rewards differ);
2. gives each completion an advantage from its group of G
   (``algorithm.estimator``: :func:`group_advantages`);
3. takes the clipped-surrogate update (``algorithm.loss``), with the KL to the
   reference in the loss when ``beta > 0`` (:func:`update_policy`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from thinkgym.trainer import distributed
from thinkgym.trainer.advantages import group_advantages
from thinkgym.trainer.collect import Batch, TaskSampler, collect_batch
from thinkgym.trainer.config import Config
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy
from thinkgym.trainer.models.policy import Policy
from thinkgym.trainer.policy_update import update_policy


def collect_grpo_batch(step: int, config: Config, policy: Policy, sampler: TaskSampler, workers) -> Batch:
    """Steps 1 and 2: a batch with each completion's group advantage."""
    batch = collect_batch(step, config, policy, sampler, workers)
    batch.advantages = group_advantages(batch.rewards, config.train.group_size, config.algorithm.resolve().estimator)
    return batch


class GRPO(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train`; ``run`` is its :class:`~thinkgym.trainer.run.Run`."""

    def __init__(self, run):
        self.run = run

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run = self.run
        with distributed.full_params(run.module):  # FSDP: sample from whole weights, without collectives
            batch = collect_grpo_batch(step, run.config, run.policy, run.sampler, run.workers)
        started = time.perf_counter()
        stats = update_policy(run.module, run.optimizer, run.scheduler, batch, run.config, run.shuffle_rng)
        return batch, {**stats, "time/update": time.perf_counter() - started}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """Nothing beyond the policy's state, which the run saves."""
        return {}, None
