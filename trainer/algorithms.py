"""The RL algorithms of thinkgym: advantages, the policy loss, KL penalties, presets.

Each piece is a small pure tensor function with its formula and paper in the
docstring; the trainer composes them per step::

    adv = group_advantages(rewards, G, cfg.estimator)              # [N]
    loss, metrics = policy_loss(logp, old_logp, adv, mask, clip_low=cfg.clip_low,
                                clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                agg=cfg.agg, ratio_level=cfg.ratio_level)
    if cfg.beta:
        loss = loss + cfg.beta * aggregate(kl_penalty(logp, ref_logp, cfg.kl), mask, cfg.agg)

Shapes: ``N`` completions (``B`` prompts x ``G`` completions each, a prompt's
``G`` completions consecutive), ``T`` completion tokens; ``mask`` is 1 on the
tokens that count (the completion, up to and including EOS) and 0 on padding.

The advantage estimators (:mod:`~thinkgym.trainer.advantages`) and the presets
(:mod:`~thinkgym.trainer.algorithm_config`) live in torch-free modules, so a
config is validated before torch loads; they are re-exported here.
"""

from __future__ import annotations

import torch

from thinkgym.trainer.advantages import ESTIMATORS, group_advantages, register_estimator  # noqa: F401 - re-exported
from thinkgym.trainer.algorithm_config import AGGREGATIONS, KL_KINDS, PRESETS, AlgorithmConfig, preset, presets_table  # noqa: F401 - re-exported


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling (Yu et al. 2025): which groups carry a learning signal.

    A group whose ``G`` rewards are all equal (all solved, all failed) has zero
    group-relative advantage and so no gradient; DAPO drops such groups and
    samples more prompts. Returns a bool tensor ``[B]``, True where the rewards
    of the group are not all equal.
    """
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    return grouped.amax(-1) != grouped.amin(-1)


def aggregate(values: torch.Tensor, mask: torch.Tensor, agg: str, norm_length: float | None = None) -> torch.Tensor:
    """Reduce per-token ``values [N, T]`` over the valid tokens of ``mask`` to a scalar.

    - ``token-mean`` (DAPO, Yu et al. 2025): ``sum_{i,t} m v / sum_{i,t} m``;
      every valid token of the batch weighs the same, so long answers are not
      under-weighted.
    - ``seq-mean-token-mean`` (GRPO, Shao et al. 2024): ``mean_i (sum_t m v / sum_t m)``;
      every sequence weighs the same.
    - ``seq-mean-token-sum-norm`` (Dr. GRPO, Liu et al. 2025):
      ``mean_i (sum_t m v / norm_length)`` with a constant ``norm_length``
      (default ``T``; pass the generation budget to keep it fixed across batches),
      which removes GRPO's length bias.

    The ``seq-mean`` forms average over the sequences with at least one valid
    token (a fully masked one, e.g. a filtered truncated answer, does not count).
    An all-masked batch gives 0.
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; choose one of {list(AGGREGATIONS)}")
    mask = mask.to(values.dtype)
    masked = torch.where(mask > 0, values, torch.zeros_like(values))
    if agg == "token-mean":
        return masked.sum() / mask.sum().clamp(min=1.0)
    lengths = mask.sum(-1)
    if agg == "seq-mean-token-mean":
        per_seq = masked.sum(-1) / lengths.clamp(min=1.0)
    else:
        per_seq = masked.sum(-1) / (values.shape[-1] if norm_length is None else norm_length)
    return per_seq.sum() / (lengths > 0).sum().clamp(min=1)


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((values * mask).sum() / mask.sum().clamp(min=1.0)).detach()


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_low: float = 0.2, clip_high: float = 0.2,
                dual_clip: float | None = None, agg: str = "token-mean", norm_length: float | None = None,
                ratio_level: str = "token") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017) with the GRPO-family switches.

    Per valid token, with ratio ``r = exp(logp - old_logp)`` and advantage ``A``::

        l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))
        l = min(l, -A dual_clip)    where A < 0, if dual_clip is set

    then ``loss = aggregate(l, mask, agg, norm_length)``.

    - decoupled ``clip_low`` / ``clip_high``: DAPO's clip-higher (Yu et al. 2025,
      0.2 / 0.28) lets low-probability tokens grow, against entropy collapse.
    - ``dual_clip`` (> 1): dual-clip PPO (Ye et al. 2020, as in verl) bounds the
      loss of a negative-advantage token whose ratio has exploded by ``-A dual_clip``.
    - ``ratio_level="sequence"``: GSPO (Zheng et al. 2025). Every token of sequence
      ``i`` uses the length-normalised sequence ratio
      ``s_i = exp(mean_t (logp - old_logp))`` in GSPO's token form
      ``s_i * exp(logp_t - sg(logp_t))`` (``sg`` = stop-gradient): its value is
      ``s_i`` and, under any of the aggregations, its gradient is GSPO's
      ``A_i grad s_i``.

    Args:
        logprobs: ``[N, T]`` log-probs of the sampled tokens under the policy being trained.
        old_logprobs: ``[N, T]`` the same under the policy that sampled them (no gradient).
        advantages: ``[N]`` (one per completion) or ``[N, T]``.
        mask: ``[N, T]`` 1 for valid completion tokens, 0 for padding.

    Returns:
        ``(loss, metrics)``: a scalar loss to call ``backward`` on, and detached
        0-d tensors: ``clip_frac_low`` / ``clip_frac_high`` (fraction of valid
        tokens where that side of the clip binds: ``r < 1 - clip_low`` with
        ``A < 0``, ``r > 1 + clip_high`` with ``A > 0``), ``approx_kl`` (mean k3
        estimate ``r - 1 - log r`` of KL(old || new) per token) and, with
        ``dual_clip``, ``dual_clip_frac`` (``A < 0`` and ``r > dual_clip``).
    """
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(f"logprobs, old_logprobs and mask must share one [N, T] shape, got "
                         f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(f"advantages must be [N] or [N, T] for logprobs {tuple(logprobs.shape)}, "
                         f"got {tuple(advantages.shape)}")
    if not (0.0 <= clip_low < 1.0 and clip_high >= 0.0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if ratio_level not in ("token", "sequence"):
        raise ValueError(f"unknown ratio_level {ratio_level!r}; choose 'token' or 'sequence'")

    valid = mask > 0
    mask = mask.to(logprobs.dtype)
    adv = advantages.detach().to(logprobs.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1).expand_as(logprobs)
    token_log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), torch.zeros_like(logprobs))
    if ratio_level == "sequence":
        seq_log_ratio = token_log_ratio.sum(-1) / mask.sum(-1).clamp(min=1.0)
        carrier = torch.where(valid, logprobs - logprobs.detach(), torch.zeros_like(logprobs))
        log_ratio = carrier + seq_log_ratio.detach().unsqueeze(-1)
    else:
        log_ratio = token_log_ratio
    ratio = torch.exp(log_ratio)

    losses = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high))
    if dual_clip is not None:
        losses = torch.where(adv < 0, torch.minimum(losses, -adv * dual_clip), losses)
    loss = aggregate(losses, mask, agg, norm_length)

    r = ratio.detach()
    metrics = {
        "clip_frac_low": _token_mean(((r < 1.0 - clip_low) & (adv < 0)).to(r.dtype), mask),
        "clip_frac_high": _token_mean(((r > 1.0 + clip_high) & (adv > 0)).to(r.dtype), mask),
        "approx_kl": _token_mean(torch.expm1(token_log_ratio.detach()) - token_log_ratio.detach(), mask),
    }
    if dual_clip is not None:
        metrics["dual_clip_frac"] = _token_mean(((r > dual_clip) & (adv < 0)).to(r.dtype), mask)
    return loss, metrics


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens (Schulman 2020,
    "Approximating KL Divergence"), elementwise:

    - ``k1 = logp - ref`` (unbiased, can be negative);
    - ``k2 = 0.5 (logp - ref)^2`` (biased, low variance);
    - ``k3 = exp(ref - logp) - (ref - logp) - 1`` (unbiased, always >= 0; the GRPO
      penalty of DeepSeekMath), clamped to ``[-10, 10]`` as in verl (``ref - logp``
      is capped at 20 first so the exponential, and so the gradient, stays finite).

    GRPO puts it in the loss: ``beta * aggregate(kl_penalty(...), mask, agg)``.
    """
    if kind == "k1":
        return logprobs - ref_logprobs
    if kind == "k2":
        return 0.5 * (logprobs - ref_logprobs).square()
    if kind == "k3":
        d = (ref_logprobs - logprobs).clamp(max=20.0)
        return (torch.expm1(d) - d).clamp(-10.0, 10.0)
    raise ValueError(f"unknown KL estimator {kind!r}; choose one of {list(KL_KINDS)}")
