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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

Estimator = Callable[[torch.Tensor, float], torch.Tensor]
ESTIMATORS: dict[str, Estimator] = {}
_MIN_GROUP_SIZE: dict[str, int] = {}


def register_estimator(name: str, min_group_size: int = 1) -> Callable[[Estimator], Estimator]:
    """Register an advantage estimator ``fn(grouped [B, G], eps) -> [B, G]`` under ``name``."""

    def add(fn: Estimator) -> Estimator:
        ESTIMATORS[name] = fn
        _MIN_GROUP_SIZE[name] = min_group_size
        return fn

    return add


@register_estimator("grpo", min_group_size=2)
def grpo_advantages(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): ``A_i = (r_i - mean(r)) / (std(r) + eps)``.

    ``std`` is the unbiased (Bessel-corrected) standard deviation of the group, as
    in DeepSeekMath and TRL; a group whose rewards are all equal gets 0, not NaN.
    """
    return (grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + eps)


@register_estimator("dr_grpo")
def dr_grpo_advantages(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, Understanding R1-Zero-Like Training): ``A_i = r_i - mean(r)``.

    Dropping the division by the group std removes GRPO's question-difficulty bias.
    """
    return grouped - grouped.mean(-1, keepdim=True)


@register_estimator("rloo", min_group_size=2)
def rloo_advantages(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, Back to Basics): ``A_i = r_i - mean_{j != i} r_j``.

    The leave-one-out baseline keeps the estimator unbiased; it equals
    ``G / (G - 1) * (r_i - mean(r))``, computed here as ``r_i - (sum(r) - r_i) / (G - 1)``.
    """
    g = grouped.shape[-1]
    return grouped - (grouped.sum(-1, keepdim=True) - grouped) / (g - 1)


@register_estimator("reinforce_pp")
def reinforce_pp_advantages(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """REINFORCE++ with baseline (Hu et al. 2025): ``x_i = r_i - mean(group)``, then
    ``A = (x - mean(x)) / (std(x) + eps)`` over the whole batch.

    The batch statistics are population ones (``std`` without Bessel's correction,
    as in OpenRLHF's advantage whitening), so any batch size is defined.
    """
    x = grouped - grouped.mean(-1, keepdim=True)
    return (x - x.mean()) / (x.std(correction=0) + eps)


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "grpo",
                     eps: float = 1e-6) -> torch.Tensor:
    """One advantage per completion from the rewards of its group.

    Args:
        rewards: 1-D tensor ``[B * group_size]``; each run of ``group_size``
            consecutive entries holds the rewards of one prompt's completions.
        group_size: ``G``, completions per prompt.
        estimator: a name in ``ESTIMATORS``: ``"grpo"``, ``"dr_grpo"``, ``"rloo"``
            or ``"reinforce_pp"`` (see each function for its formula and paper).
        eps: added to standard deviations before dividing.

    Returns:
        1-D float tensor of advantages, aligned with ``rewards``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor, got shape {tuple(rewards.shape)}")
    if group_size < _MIN_GROUP_SIZE[estimator]:
        raise ValueError(f"estimator {estimator!r} needs group_size >= {_MIN_GROUP_SIZE[estimator]}, "
                         f"got {group_size}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of length {rewards.numel()} do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    return ESTIMATORS[estimator](grouped, eps).view(-1)


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


AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


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


KL_KINDS = ("k1", "k2", "k3")


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


OVERLONG = (None, "soft_penalty", "mask_truncated")


@dataclass(frozen=True)
class AlgorithmConfig:
    """Every algorithm choice of a training run; ``PRESETS`` holds the named ones.

    Attributes:
        estimator: advantage estimator, a key of ``ESTIMATORS``.
        clip_low, clip_high: the ratio is clipped to ``[1 - clip_low, 1 + clip_high]``.
        dual_clip: dual-clip bound ``c > 1`` for negative advantages, or None.
        agg: loss aggregation, one of ``AGGREGATIONS``.
        ratio_level: ``"token"`` (PPO/GRPO) or ``"sequence"`` (GSPO).
        kl: KL estimator for the penalty, one of ``KL_KINDS``.
        beta: KL coefficient; 0 drops the penalty and the reference model.
        dynamic_sampling: DAPO: drop groups whose rewards are all equal
            (``informative_groups``) and sample more prompts.
        overlong: what to do with answers that hit the length limit: None;
            ``"soft_penalty"`` (DAPO's ``thinkgym.rewards.overlong_penalty`` added to the reward);
            ``"mask_truncated"`` (DAPO's overlong filtering: their tokens leave the loss mask).
        overlong_buffer: ``L_cache`` as a fraction of the max completion length.
        paper: where the recipe comes from.
    """

    estimator: str = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg: str = "token-mean"
    ratio_level: str = "token"
    kl: str = "k3"
    beta: float = 0.0
    dynamic_sampling: bool = False
    overlong: str | None = None
    overlong_buffer: float = 0.2
    paper: str = ""

    def __post_init__(self):
        checks = {
            "estimator": (self.estimator in ESTIMATORS, sorted(ESTIMATORS)),
            "clip_low": (0.0 <= self.clip_low < 1.0, "a number in [0, 1)"),
            "clip_high": (self.clip_high >= 0.0, "a number >= 0"),
            "dual_clip": (self.dual_clip is None or self.dual_clip > 1.0, "None or a number > 1"),
            "agg": (self.agg in AGGREGATIONS, list(AGGREGATIONS)),
            "ratio_level": (self.ratio_level in ("token", "sequence"), ["token", "sequence"]),
            "kl": (self.kl in KL_KINDS, list(KL_KINDS)),
            "beta": (self.beta >= 0.0, "a number >= 0"),
            "dynamic_sampling": (isinstance(self.dynamic_sampling, bool), "true or false"),
            "overlong": (self.overlong in OVERLONG, list(OVERLONG)),
            "overlong_buffer": (0.0 < self.overlong_buffer <= 1.0, "a fraction in (0, 1]"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"algorithm.{key}: got {getattr(self, key)!r}, expected {expected}")


PRESETS: dict[str, AlgorithmConfig] = {
    # DeepSeekMath (Shao et al. 2024): std-normalised group advantages, per-sequence
    # token means, k3 KL in the loss with beta 0.04, clip 0.2.
    "grpo": AlgorithmConfig(
        estimator="grpo", agg="seq-mean-token-mean", kl="k3", beta=0.04,
        paper="Shao et al. 2024, DeepSeekMath (arXiv:2402.03300)"),
    # Dr. GRPO (Liu et al. 2025): no std normalisation, token sums over a constant
    # length, no KL.
    "dr_grpo": AlgorithmConfig(
        estimator="dr_grpo", agg="seq-mean-token-sum-norm",
        paper="Liu et al. 2025, Understanding R1-Zero-Like Training (arXiv:2503.20783)"),
    # DAPO (Yu et al. 2025): clip-higher 0.2 / 0.28, token-level loss, no KL,
    # dynamic sampling, soft overlong punishment (4096 of 20480 tokens).
    "dapo": AlgorithmConfig(
        estimator="grpo", clip_high=0.28, agg="token-mean", dynamic_sampling=True,
        overlong="soft_penalty", overlong_buffer=0.2,
        paper="Yu et al. 2025, DAPO (arXiv:2503.14476)"),
    # RLOO (Ahmadian et al. 2024): leave-one-out baseline. The paper and TRL's
    # RLOOTrainer treat a completion as one action: the loss is A_i times the *sum*
    # of its token log-probs, averaged over sequences. seq-mean-token-sum-norm is
    # exactly that up to the constant 1/norm_length (a learning-rate scale), where
    # token-mean or seq-mean-token-mean would reweight tokens by length. beta 0:
    # with a verifiable reward there is no reward model to over-optimise (TRL puts
    # a KL into the reward instead, default 0.05).
    "rloo": AlgorithmConfig(
        estimator="rloo", agg="seq-mean-token-sum-norm",
        paper="Ahmadian et al. 2024, Back to Basics: REINFORCE-style optimization (arXiv:2402.14740)"),
    # GSPO (Zheng et al. 2025): length-normalised sequence ratio with its tiny clip
    # range 3e-4 / 4e-4, group-normalised advantages, per-sequence means, no KL.
    "gspo": AlgorithmConfig(
        estimator="grpo", clip_low=3e-4, clip_high=4e-4, agg="seq-mean-token-mean", ratio_level="sequence",
        paper="Zheng et al. 2025, Group Sequence Policy Optimization (arXiv:2507.18071)"),
}


def preset(name: str, **overrides) -> AlgorithmConfig:
    """The named preset, with ``overrides`` replacing some of its fields (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown algorithm preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(AlgorithmConfig)}
    if unknown:
        raise ValueError(f"unknown algorithm option(s) {sorted(unknown)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def presets_table() -> str:
    """A markdown table of the presets, one row each, for the README."""
    header = ("| preset | advantages | loss aggregation | clip (low / high) | ratio | KL (beta) "
              "| dynamic sampling | overlong | paper |")
    rows = [header, "|" + " --- |" * 9]
    for name, c in PRESETS.items():
        kl = f"{c.kl} ({c.beta:g})" if c.beta else "none"
        overlong = f"{c.overlong} ({c.overlong_buffer:g})" if c.overlong else "-"
        rows.append(f"| `{name}` | {c.estimator} | {c.agg} | {c.clip_low:g} / {c.clip_high:g} | {c.ratio_level} "
                    f"| {kl} | {'yes' if c.dynamic_sampling else 'no'} | {overlong} | {c.paper} |")
    return "\n".join(rows)
