"""The losses of thinkgym's objectives: policy and value losses, their aggregation,
KL penalties, and the pairwise preference losses (DPO, IPO, Bradley-Terry).

Each piece is a small pure tensor function with its formula and paper in the
docstring; the trainer composes them per step::

    adv = group_advantages(rewards, G, cfg.estimator)              # [N]
    loss, metrics = LOSSES[cfg.loss](logp, old_logp, adv, mask, clip_low=cfg.clip_low,
                                     clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                     agg=cfg.agg, norm_length=None, ratio_level=cfg.ratio_level)
    if cfg.beta:
        loss = loss + cfg.beta * aggregate(kl_penalty(logp, ref_logp, cfg.kl), mask, cfg.agg)

PPO with a critic (``cfg.estimator == "gae"``) puts the KL into the per-token
reward instead and fits the critic alongside::

    adv, ret = gae(token_rewards, values, mask, cfg.gamma, cfg.lam)  # [N, T] each
    if cfg.whiten_advantages:
        adv = whiten(adv, mask)
    loss, metrics = LOSSES[cfg.loss](logp, old_logp, adv, mask, ...)
    v_loss, v_metrics = value_loss(new_values, values, ret, mask, clip=cfg.vf_clip, agg=cfg.agg)

The policy losses are registered by name in ``LOSSES`` (``register_loss``), as the
advantage estimators are in ``ESTIMATORS``. One contract for all of them::

    fn(logprobs [N, T], old_logprobs [N, T], advantages [N] or [N, T], mask [N, T], *,
       clip_low, clip_high, dual_clip, agg, norm_length, ratio_level) -> (loss, metrics)

``loss`` is a scalar to call ``backward`` on; ``metrics`` maps names to detached
0-d tensors, at least ``clip_frac_low``, ``clip_frac_high`` and ``approx_kl``. A
loss that cannot honour an argument's value (``cispo`` with ``dual_clip`` or
``ratio_level="sequence"``) raises ``ValueError`` naming it, never ignores it.

Shapes: ``N`` completions (``B`` prompts x ``G`` completions each, a prompt's
``G`` completions consecutive), ``T`` completion tokens; ``mask`` is 1 on the
tokens that count (the completion, up to and including EOS) and 0 on padding.

The advantage estimators (:mod:`~thinkgym.trainer.advantages`, the registry next
to this one) and the presets (:mod:`~thinkgym.trainer.algorithm_config`) live in
torch-free modules, so a config is validated before torch loads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from thinkgym.trainer.algorithm_config import AGGREGATIONS, KL_KINDS

PolicyLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
LOSSES: dict[str, PolicyLoss] = {}
"""The policy losses by name; each keeps the contract of the module docstring."""


def register_loss(name: str) -> Callable[[PolicyLoss], PolicyLoss]:
    """Register a policy loss ``fn(logprobs, old_logprobs, advantages, mask, *, clip_low,
    clip_high, dual_clip, agg, norm_length, ratio_level) -> (loss, metrics)`` under ``name``."""

    def add(fn: PolicyLoss) -> PolicyLoss:
        LOSSES[name] = fn
        return fn

    return add


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


@register_loss("ppo_clip")
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
    _check_advantages(advantages, logprobs)
    if not (0.0 <= clip_low < 1.0 and clip_high >= 0.0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if ratio_level not in ("token", "sequence"):
        raise ValueError(f"unknown ratio_level {ratio_level!r}; choose 'token' or 'sequence'")

    valid, mask, adv = _per_token(logprobs, advantages, mask)
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


def _per_token(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor):
    """(valid token positions, the mask and the detached advantages as [N, T] in ``logprobs``'s dtype)."""
    adv = advantages.detach().to(logprobs.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1).expand_as(logprobs)
    return mask > 0, mask.to(logprobs.dtype), adv


def _check_advantages(advantages: torch.Tensor, logprobs: torch.Tensor) -> None:
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(f"advantages must be [N] or [N, T] for logprobs {tuple(logprobs.shape)}, "
                         f"got {tuple(advantages.shape)}")


@register_loss("cispo")
def cispo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
               mask: torch.Tensor, *, clip_low: float, clip_high: float, dual_clip: float | None = None,
               agg: str, norm_length: float | None = None,
               ratio_level: str = "token") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CISPO (MiniMax-M1, Chen et al. 2025, arXiv:2506.13585): clip the importance-sampling
    weight, not the update.

    Per valid token, with ratio ``r = exp(logp - old_logp)`` and advantage ``A``::

        w = sg(clip(r, 1 - clip_low, 1 + clip_high))      (sg = stop-gradient)
        l = -w A logp

    then ``loss = aggregate(l, mask, agg, norm_length)``. The gradient is
    REINFORCE's, ``-w A grad logp``, reweighted by the bounded weight: unlike the
    PPO clip, which zeroes the gradient of a token whose ratio left the trust
    region, every token keeps a gradient, so the rare reflective tokens
    ("However", "Wait") that PPO clips away after one update still learn. With
    ``token-mean`` this is the paper's ``1 / sum_i |o_i|`` normalisation (eq. 4).

    ``clip_low`` / ``clip_high`` bound the weight to ``[1 - clip_low, 1 + clip_high]``,
    as ``clip_ratio_low`` / ``clip_ratio_high`` do in verl's ``cispo`` loss.
    MiniMax-M1 sets no lower bound and tunes only the upper one: ``clip_low = 1``
    (the lower bound 0 never binds, the weight is positive). TRL's
    ``epsilon_high`` for ``cispo`` is the cap itself, so its recommended 5.0 is
    ``clip_high = 4`` here. The loss value is not the objective's value (the
    log-probs enter linearly), only its gradient is meaningful.

    Same keyword arguments as :func:`policy_loss`; ``dual_clip`` must be None (the
    weight is already bounded above) and ``ratio_level`` ``"token"`` (the weight
    is per token).

    Returns:
        ``(loss, metrics)``: a scalar loss and detached 0-d tensors:
        ``clip_frac_low`` / ``clip_frac_high`` (fraction of valid tokens whose
        weight was clipped: ``r < 1 - clip_low`` / ``r > 1 + clip_high``, whatever
        the sign of ``A``), ``approx_kl`` (mean k3 estimate ``r - 1 - log r`` of
        KL(old || new) per token).
    """
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(f"logprobs, old_logprobs and mask must share one [N, T] shape, got "
                         f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    _check_advantages(advantages, logprobs)
    if not (0.0 <= clip_low <= 1.0 and clip_high >= 0.0):
        raise ValueError(f"cispo needs 0 <= clip_low <= 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None:
        raise ValueError(f"dual_clip does not apply to cispo (its weight is bounded by 1 + clip_high); "
                         f"got {dual_clip}, pass None")
    if ratio_level != "token":
        raise ValueError(f"cispo clips a per-token weight: ratio_level must be 'token', got {ratio_level!r}")

    valid, mask, adv = _per_token(logprobs, advantages, mask)
    log_ratio = torch.where(valid, logprobs.detach() - old_logprobs.detach(), torch.zeros_like(logprobs))
    r = torch.exp(log_ratio)
    weight = r.clamp(1.0 - clip_low, 1.0 + clip_high)
    logp = torch.where(valid, logprobs, torch.zeros_like(logprobs))  # padding may hold -inf
    loss = aggregate(-weight * adv * logp, mask, agg, norm_length)
    metrics = {
        "clip_frac_low": _token_mean((r < 1.0 - clip_low).to(r.dtype), mask),
        "clip_frac_high": _token_mean((r > 1.0 + clip_high).to(r.dtype), mask),
        "approx_kl": _token_mean(torch.expm1(log_ratio) - log_ratio, mask),
    }
    return loss, metrics


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               *, clip: float | None = None, agg: str = "token-mean",
               norm_length: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss (Schulman et al. 2017; as in OpenRLHF, TRL and verl).

    Per valid token, with the critic's new value ``V``, its value at rollout time
    ``V_old`` and the GAE return ``R``::

        l = 0.5 (V - R)^2                                              clip None
        l = 0.5 max((V - R)^2, (V_old + clamp(V - V_old, -clip, clip) - R)^2)   otherwise

    then ``loss = aggregate(l, mask, agg, norm_length)``. The clipped form keeps a
    value update within ``clip`` of the old value from lowering the loss (the
    pessimistic max, like the policy clip).

    Args:
        values: ``[N, T]`` the critic's values, with gradient.
        old_values: ``[N, T]`` its values when the batch was collected (no gradient).
        returns: ``[N, T]`` the targets, ``gae``'s returns (no gradient).
        mask: ``[N, T]`` 1 for valid completion tokens, 0 for padding.
        clip: the value-clip range, > 0, or None.

    Returns:
        ``(loss, metrics)``: a scalar loss and detached 0-d tensors over the valid
        tokens: ``value_clip_frac`` (fraction where the clipped term is strictly
        the larger one; 0 without ``clip``), ``value_mean`` (mean of ``V``) and
        ``explained_variance`` ``1 - Var(R - V) / Var(R)`` (population variances;
        1 is a perfect critic, 0 one no better than the mean return, negative
        worse; defined as 0 when ``Var(R) = 0`` or no token is valid).
    """
    if values.dim() != 2 or old_values.shape != values.shape or returns.shape != values.shape \
            or mask.shape != values.shape:
        raise ValueError(f"values, old_values, returns and mask must share one [N, T] shape, got "
                         f"{tuple(values.shape)}, {tuple(old_values.shape)}, {tuple(returns.shape)}, "
                         f"{tuple(mask.shape)}")
    if clip is not None and not clip > 0.0:
        raise ValueError(f"value clip must be None or > 0, got {clip}")

    valid = mask > 0
    mask = mask.to(values.dtype)
    zeros = torch.zeros_like(values)
    v = torch.where(valid, values, zeros)
    old = torch.where(valid, old_values.detach().to(values.dtype), zeros)
    ret = torch.where(valid, returns.detach().to(values.dtype), zeros)
    unclipped = (v - ret).square()
    if clip is None:
        losses = 0.5 * unclipped
        clipped_wins = torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        clipped = (old + (v - old).clamp(-clip, clip) - ret).square()
        losses = 0.5 * torch.maximum(unclipped, clipped)
        clipped_wins = clipped.detach() > unclipped.detach()
    loss = aggregate(losses, mask, agg, norm_length)

    m = mask.detach().float()
    vd, rd = v.detach().float(), ret.detach().float()
    metrics = {
        "value_clip_frac": _token_mean(clipped_wins.float(), m),
        "value_mean": _token_mean(vd, m),
        "explained_variance": explained_variance(vd, rd, m),
    }
    return loss, metrics


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(R - V) / Var(R)`` over the valid tokens (population variances), 0 when ``Var(R) = 0``."""
    count = mask.sum().clamp(min=1.0)

    def var(x: torch.Tensor) -> torch.Tensor:
        mean = (x * mask).sum() / count
        return ((x - mean).square() * mask).sum() / count

    var_r = var(returns)
    ev = 1.0 - var(returns - values) / var_r.clamp(min=torch.finfo(var_r.dtype).tiny)
    return torch.where(var_r > 0, ev, torch.zeros_like(ev)).detach()


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


PairLoss = Callable[[torch.Tensor, float], torch.Tensor]
PREFERENCE_LOSSES: dict[str, PairLoss] = {
    # DPO (Rafailov et al. 2023, arXiv:2305.18290): the Bradley-Terry likelihood of
    # the implicit reward beta * log(pi / pi_ref).
    "sigmoid": lambda h, beta: -F.logsigmoid(beta * h),
    # IPO (Azar et al. 2023, arXiv:2310.12036): regresses h to 1 / (2 beta), so it
    # does not push the margin to infinity on deterministic preferences.
    "ipo": lambda h, beta: (h - 1.0 / (2.0 * beta)).square(),
}
"""Per-pair losses of ``h``, the chosen completion's log-ratio to the reference
minus the rejected one's, by name (``dpo_loss``'s ``kind``)."""


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, *, beta: float,
             kind: str = "sigmoid") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO-family loss over ``P`` preference pairs, each argument ``[P]`` sequence
    log-probs (the policy's with gradient, the reference's without)::

        h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
        sigmoid (DPO):  l = -log sigmoid(beta * h)
        ipo (IPO):      l = (h - 1 / (2 beta))^2

    ``loss`` is the mean of ``l`` over the pairs. ``metrics`` (detached) hold DPO's
    implicit rewards ``beta * (log pi - log pi_ref)``: ``rewards/chosen``,
    ``rewards/rejected``, their ``rewards/margin`` and ``rewards/accuracy`` (the
    fraction of pairs where the chosen one's is higher), and the policy's mean
    ``logps/chosen`` and ``logps/rejected``.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if kind not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {kind!r}; choose one of {sorted(PREFERENCE_LOSSES)}")
    chosen_ratio = chosen_logps - ref_chosen_logps.detach()
    rejected_ratio = rejected_logps - ref_rejected_logps.detach()
    loss = PREFERENCE_LOSSES[kind](chosen_ratio - rejected_ratio, beta).mean()
    chosen_reward, rejected_reward = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    metrics = {"rewards/chosen": chosen_reward.mean(), "rewards/rejected": rejected_reward.mean(),
               "rewards/margin": (chosen_reward - rejected_reward).mean(),
               "rewards/accuracy": (chosen_reward > rejected_reward).float().mean(),
               "logps/chosen": chosen_logps.detach().mean(), "logps/rejected": rejected_logps.detach().mean()}
    return loss, metrics


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A reward model's pairwise loss over ``P`` pairs (Bradley and Terry 1952, as
    InstructGPT trains its reward model; the margin as in Llama 2)::

        l = -log sigmoid(r(x, y_w) - r(x, y_l) - margin)

    ``loss`` is the mean over the pairs; ``metrics`` (detached): ``accuracy``, the
    fraction of pairs the model orders correctly (``r_w > r_l``), and the mean ``margin`` ``r_w - r_l``.
    """
    diff = chosen_rewards - rejected_rewards
    loss = -F.logsigmoid(diff - (0.0 if margin is None else margin)).mean()
    return loss, {"accuracy": (diff > 0).float().mean().detach(), "margin": diff.mean().detach()}
