"""The group-relative objectives (GRPO, Dr. GRPO, DAPO, RLOO, GSPO, CISPO), read
top to bottom: ``algorithm.objective: grpo``, every preset but ``ppo``.

A step:

1. collects B prompts x G completions and their rewards (:func:`collect_batch`;
   under dynamic sampling, only groups whose rewards differ);
2. gives each completion an advantage from its group of G
   (``algorithm.estimator``: :func:`group_advantages`);
3. takes the clipped-surrogate update (``algorithm.loss``), with the KL to the
   reference in the loss when ``beta > 0`` (:func:`update_policy`).

One step off-policy (``train.off_policy_steps: 1``): step s+1's groups are
sampled in a thread, from the engine's copy of step s's weights, while step s
trains; step s+1 trains on them, one optimizer step stale, their importance
weight ``p_policy / p_rollout`` truncated at ``sampling.tis_cap``. The first
step of a run (and of a resume) samples on-policy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from thinkgym.trainer import distributed
from thinkgym.trainer.advantages import group_advantages
from thinkgym.trainer.collect import Batch, TaskSampler, assemble_batch, collect_batch, sample_groups
from thinkgym.trainer.config import Config
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy
from thinkgym.trainer.models.policy import Policy
from thinkgym.trainer.policy_update import update_policy


def collect_grpo_batch(step: int, config: Config, policy: Policy, sampler: TaskSampler, workers) -> Batch:
    """Steps 1 and 2: a batch with each completion's group advantage."""
    batch = collect_batch(step, config, policy, sampler, workers)
    return with_advantages(batch, config)


def with_advantages(batch: Batch, config: Config) -> Batch:
    batch.advantages = group_advantages(batch.rewards, config.train.group_size, config.algorithm.resolve().estimator)
    return batch


class GRPO(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train`; ``run`` is its :class:`~thinkgym.trainer.run.Run`."""

    def __init__(self, run):
        self.run = run

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run = self.run
        if run.config.train.off_policy_steps:
            batch = self._off_policy_batch(step)
        else:
            with distributed.full_params(run.module):  # FSDP: sample from whole weights, without collectives
                batch = collect_grpo_batch(step, run.config, run.policy, run.sampler, run.workers)
        started = time.perf_counter()
        stats = update_policy(run.module, run.optimizer, run.scheduler, batch, run.config, run.shuffle_rng)
        return batch, {**stats, "time/update": time.perf_counter() - started}

    def _off_policy_batch(self, step: int) -> Batch:
        """Step ``step``'s batch, sampled during the previous step (or now, the
        first time); then step ``step + 1``'s sampling starts, from the engine's
        copy of the current weights (``sync_engine`` waits for it before loading the next)."""
        run = self.run
        groups = run.in_flight.take(step)
        stale = groups is not None
        if groups is None:
            groups = sample_groups(step, run.config, run.policy, run.sampler, run.workers, trainer_logprobs=False)
        if step + 1 < run.config.train.steps:
            run.in_flight.start(step + 1, run.config, run.policy, run.sampler, run.workers)
        with distributed.full_params(run.module):
            batch = assemble_batch(groups, run.config, run.policy, staleness_added=int(stale))
        return with_advantages(batch, run.config)

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """Nothing beyond the policy's state, which the run saves."""
        return {}, None
