"""DPO (``algorithm.objective: dpo``), read top to bottom: offline, on the
preference pairs of ``data.path``, or online and iterated, on pairs the
environment's reward picks.

Offline, a step takes ``data.batch_size`` pairs in a seeded shuffled order,
computes their reference log-probs and takes the update of step 3 below, at
temperature 1 (the models' own distributions), against a fixed reference.

Online, a step:

1. collects B prompts x G completions and their rewards, keeping only groups
   whose rewards differ (as DAPO's dynamic sampling does; :func:`collect_batch`);
2. pairs each group's highest-reward completion (chosen) with its lowest
   (rejected) (:func:`preference_pairs`);
3. takes the DPO update on the pairs (:func:`update_dpo`): ``dpo.loss`` sigmoid
   (DPO) or ipo, scale ``dpo.beta``, plus ``dpo.nll_coef`` times the chosen
   completions' NLL, against the reference, which is fixed, or becomes the
   current policy every ``dpo.reference_refresh`` steps (iterated DPO).

A completion's log-prob is the sum of its tokens' (through the chunked head, as
for the policy loss); online, at the sampling temperature for the policy and the
reference alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer import distributed
from thinkgym.trainer.accumulate import accumulate_and_step
from thinkgym.trainer.collect import Batch, batch_logprobs, collect_batch
from thinkgym.trainer.engines.rollouts import Rollouts, select
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy
from thinkgym.trainer.losses import dpo_loss
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sft import demonstrations_batch, file_batch

REFERENCE_FOLDER = "reference"  # inside a checkpoint, when the reference is refreshed


class DPO(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train`; ``run`` is its
    :class:`~thinkgym.trainer.run.Run`, whose reference this objective refreshes."""

    def __init__(self, run):
        self.run = run
        if run.checkpoint and run.config.dpo.reference_refresh:  # the reference of the step resumed
            run.policy.reference = load_model(str(run.checkpoint / REFERENCE_FOLDER), run.config.model.dtype,
                                              run.device)[0].eval()

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run, every = self.run, self.run.config.dpo.reference_refresh
        if every and step and step % every == 0:
            refresh_reference(run.policy.reference, run.policy.model)
        if run.data is not None:
            return self._offline_step(step)
        with distributed.full_params(run.module):  # FSDP: sample from whole weights, without collectives
            batch = collect_batch(step, run.config, run.policy, run.sampler, run.workers)
        started = time.perf_counter()
        rows = preference_pairs(batch.rewards, run.config.train.group_size)
        stats = update_dpo(run, select(batch.rollouts, rows), batch.loss_mask[rows], run.config.sampling.temperature)
        return batch, {**stats, "dpo/pairs": len(rows) // 2, "time/update": time.perf_counter() - started}

    def _offline_step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run, t = self.run, self.run.config.train
        pairs = file_batch(run, step)
        started = time.perf_counter()
        pairs.ref_logprobs = batch_logprobs(run.policy.reference, pairs, t.micro_batch_size, 1.0, t.bucket_by_length)
        stats = update_dpo(run, pairs, pairs.completion_mask, 1.0)
        return demonstrations_batch(pairs), {**stats, "dpo/pairs": len(pairs.texts) // 2,
                                             "time/update": time.perf_counter() - started}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """A refreshed reference is saved with the run (a fixed one is the base model)."""
        if not self.run.config.dpo.reference_refresh:
            return {}, None
        return {}, self._save_reference

    def _save_reference(self, folder: Path) -> None:
        """A whole causal-LM checkpoint (weights and tokenizer) in ``folder/reference``."""
        self.run.policy.reference.save_pretrained(folder / REFERENCE_FOLDER)
        self.run.policy.tokenizer.save_pretrained(folder / REFERENCE_FOLDER)


def preference_pairs(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Row indices ``[chosen_0, rejected_0, chosen_1, ...]``: in each group of
    ``group_size`` consecutive rows whose rewards differ, the first row with the
    highest reward and the first with the lowest; groups of equal rewards give none."""
    grouped = rewards.view(-1, group_size)
    informative = grouped.max(1).values > grouped.min(1).values
    base = torch.arange(len(grouped)) * group_size
    pairs = torch.stack([base + grouped.argmax(1), base + grouped.argmin(1)], 1)
    return pairs[informative].reshape(-1)


@torch.no_grad()
def refresh_reference(reference, policy) -> None:
    """Copy the policy's weights into the reference. Every rank calls it (FSDP
    gathers each sharded parameter)."""
    from torch.distributed.tensor import DTensor

    for ref, param in zip(reference.parameters(), policy.parameters(), strict=True):
        ref.copy_(param.full_tensor() if isinstance(param, DTensor) else param)


def update_dpo(run, pairs: Rollouts, loss_mask: torch.Tensor, temperature: float) -> dict[str, float]:
    """The DPO update over ``pairs`` (chosen and rejected rows alternating, their
    reference log-probs at ``temperature`` in ``pairs.ref_logprobs``):
    :func:`accumulate_and_step` with each pair kept in one micro-batch, then one
    scheduler step. Statistics are per pair: the implicit rewards, their margin
    and accuracy, the log-probs (``dpo/...``)."""
    d, t = run.config.dpo, run.config.train
    ref_logps = (pairs.ref_logprobs * loss_mask).sum(1)

    def loss_fn(mb, mask):
        logprobs = run.module(*mb.inputs, temperature, False)[0]
        logps, ref = (logprobs * mask).sum(1), mb.take(ref_logps)
        loss, stats = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], beta=d.beta, kind=d.loss)
        if d.nll_coef:
            chosen = mask[0::2]
            nll = -(logprobs[0::2] * chosen).sum() / chosen.sum().clamp(min=1)
            loss = loss + d.nll_coef * nll
            stats["nll"] = nll.detach()
        return loss, {f"dpo/{k}": v for k, v in stats.items()}

    # A pair's loss is one value: mean over pairs, i.e. over rows, two at a time.
    stats = accumulate_and_step(run.module, run.optimizer, pairs, loss_mask, loss_fn, agg="seq-mean-token-mean",
                                epochs=t.epochs_per_batch, mini_batch_size=t.mini_batch_size,
                                micro_batch_size=t.micro_batch_size, bucket=t.bucket_by_length,
                                max_grad_norm=t.max_grad_norm, rng=run.shuffle_rng, group=2, row_stats=True)
    run.scheduler.step()
    return stats
