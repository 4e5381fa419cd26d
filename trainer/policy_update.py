"""The policy's clipped-surrogate update, shared by the RL objectives
(``grpo.py``, ``ppo.py``): the registered policy loss over the batch's
advantages, the KL to the reference when it is in the loss, and the
rollout/trainer log-prob gap with its optional correction (truncated importance
sampling), and PPO's value loss when the critic shares the policy's trunk."""

from __future__ import annotations

import torch

from thinkgym.trainer.accumulate import accumulate_and_step
from thinkgym.trainer.collect import Batch
from thinkgym.trainer.config import Config
from thinkgym.trainer.losses import LOSSES, aggregate, kl_penalty, value_loss


def update_policy(module, optimizer, scheduler, batch: Batch, config: Config, rng: torch.Generator,
                  value_coef: float = 0.0) -> dict[str, float]:
    """The policy's update: :func:`accumulate_and_step` over the batch with the
    registered policy loss (``algorithm.loss``) and, when ``beta`` puts it in the
    loss, the KL to the reference; then one scheduler step. ``module`` is
    :func:`distributed.wrap` of the policy (``tokens/*`` metrics count the decoder work).
    ``value_coef`` > 0 (PPO, ``critic.shared_trunk``) adds that times the clipped
    value loss of the policy's shared value head against ``batch.returns``."""
    t, algo = config.train, config.algorithm.resolve()
    old_logprobs, ref_logprobs = batch.rollouts.old_logprobs, batch.rollouts.ref_logprobs
    rollout_logprobs = batch.rollouts.rollout_logprobs  # set when the engine reports them
    gaps: list[torch.Tensor] = []
    norm_length = float(config.sampling.max_new_tokens)
    loss_of = LOSSES[algo.loss]

    def loss_fn(mb, mask):
        logprobs, entropy, values = module(*mb.inputs, config.sampling.temperature, True)
        old = logprobs.detach() if old_logprobs is None else mb.take(old_logprobs)
        advantages = mb.take(batch.advantages)
        if rollout_logprobs is not None:  # the engine's numerics vs the trainer's, and their correction
            drift = old - mb.take(rollout_logprobs)
            gaps.append(drift.abs()[mb.take(batch.rollouts.completion_mask).bool()])
            if config.sampling.tis_cap:  # per token: the surrogate scales linearly in A
                advantages = (advantages if advantages.dim() > 1 else advantages[:, None]) * \
                    drift.exp().clamp(max=config.sampling.tis_cap)
        loss, stats = loss_of(logprobs, old, advantages, mask, clip_low=algo.clip_low, clip_high=algo.clip_high,
                              dual_clip=algo.dual_clip, agg=algo.agg, norm_length=norm_length,
                              ratio_level=algo.ratio_level)
        if algo.beta > 0 and not algo.uses_critic:
            kl = aggregate(kl_penalty(logprobs, mb.take(ref_logprobs), algo.kl), mask, algo.agg, norm_length)
            loss = loss + algo.beta * kl
            stats["kl_ref"] = kl.detach()
        if value_coef:  # PPO with a value head on the policy's trunk: one joint loss
            v_loss, v_stats = value_loss(values, mb.take(batch.values), mb.take(batch.returns), mask, clip=algo.vf_clip,
                                         agg=algo.agg, norm_length=norm_length)
            loss = loss + value_coef * v_loss
            stats.update(value_loss=v_loss.detach(), value_clip_frac=v_stats["value_clip_frac"])
        stats["entropy"] = (entropy * mask).sum() / mask.sum().clamp(min=1)
        return loss, stats

    stats = accumulate_and_step(module, optimizer, batch.rollouts, batch.loss_mask, loss_fn, agg=algo.agg,
                                epochs=t.epochs_per_batch, mini_batch_size=t.mini_batch_size,
                                micro_batch_size=t.micro_batch_size, bucket=t.bucket_by_length,
                                max_grad_norm=t.max_grad_norm, rng=rng)
    scheduler.step()
    # Decoder token positions this step (all epochs) vs the same micro-batches at full width.
    stats["tokens/padding_saved_frac"] = 1 - stats["tokens/computed"] / stats["tokens/full_width"]
    if gaps:
        gap = torch.cat(gaps)
        stats.update({"rollout_logprob_gap/mean": gap.mean().item(), "rollout_logprob_gap/max": gap.max().item()})
    return stats
