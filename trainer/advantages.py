"""Advantage estimators: the group-relative ones, by name, with :func:`group_advantages`;
and the token-level ones of PPO with a critic, :func:`gae` and :func:`whiten`.

Each group estimator maps the rewards of ``B`` groups, ``[B, G]``, to one advantage
per completion, with its formula and paper in the docstring. ``"gae"`` (in
``TOKEN_ESTIMATORS``) is no group estimator: it needs a critic's values, one per
token, and is computed by :func:`gae`. Everything here is written with tensor
methods only: this module never imports torch, so a config naming an estimator is
checked (:class:`~thinkgym.trainer.algorithm_config.AlgorithmConfig`) before torch
loads. :mod:`thinkgym.trainer.losses` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Estimator = Callable[["torch.Tensor", float], "torch.Tensor"]
ESTIMATORS: dict[str, Estimator] = {}
"""The group estimators, ``fn(grouped [B, G], eps) -> [B, G]``, by name."""
TOKEN_ESTIMATORS = ("gae",)
"""Token-level estimators: they need a critic (objective ppo), so they are not in ``ESTIMATORS``."""
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
    if estimator in TOKEN_ESTIMATORS:
        raise ValueError(f"advantage estimator {estimator!r} is not a group estimator: it needs a critic's "
                         f"per-token values (objective ppo; see gae()); group estimators: {sorted(ESTIMATORS)}")
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


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    Per row, with ``m`` the mask (1 on the completion's valid tokens, a contiguous
    prefix; 0 on right padding), backwards over ``t``::

        delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
        A_t     = delta_t + gamma * lam * m_{t+1} * A_{t+1}
        R_t     = A_t + V_t                                 (the critic's target)

    The value after the last valid token is 0 (the episode ends there), and
    ``A`` and ``R`` are 0 on padding. The two limits:

    - ``lam = 0``: the one-step TD error ``A_t = r_t + gamma V_{t+1} - V_t``
      (low variance, biased by the critic);
    - ``lam = 1``: the Monte-Carlo return minus the value,
      ``A_t = sum_k gamma^k r_{t+k} - V_t`` (unbiased, high variance), so ``R_t`` is
      the discounted return-to-go.

    Args:
        rewards: ``[N, T]`` per-token rewards (typically the task reward on the last
            valid token, plus a per-token KL penalty in PPO).
        values: ``[N, T]`` the critic's ``V(s_t)``; no gradient flows through it.
        mask: ``[N, T]`` 1 on valid tokens (a prefix of each row), 0 on padding.
        gamma: discount, in ``[0, 1]``.
        lam: GAE's ``lambda``, in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both float32 ``[N, T]``, 0 on padding.
    """
    if rewards.dim() != 2 or values.shape != rewards.shape or mask.shape != rewards.shape:
        raise ValueError(f"rewards, values and mask must share one [N, T] shape, got "
                         f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    valid = mask > 0
    m = valid.float()
    if bool((m[:, 1:] > m[:, :-1]).any()):
        raise ValueError("mask must be a contiguous prefix of 1s in each row (right padding only)")
    r = rewards.detach().float().masked_fill(~valid, 0.0)  # padding may hold anything, even NaN
    v = values.detach().float().masked_fill(~valid, 0.0)
    n, t_len = r.shape
    advantages = r.new_zeros(n, t_len)
    next_value = r.new_zeros(n)  # V_{t+1} * m_{t+1}: 0 after the last valid token
    next_adv = r.new_zeros(n)    # A_{t+1} * m_{t+1}
    for t in reversed(range(t_len)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv
        next_value, next_adv = v[:, t], adv  # already 0 where m_t = 0
    return advantages, (advantages + v) * m


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """Masked whitening, as ``masked_whiten`` in OpenRLHF and TRL:
    ``(x - mean) / sqrt(var + eps)`` over the valid entries of ``mask``.

    ``mean`` and the unbiased (Bessel-corrected) ``var`` are taken over the valid
    entries only; ``shift_mean=False`` adds the mean back, so the spread is
    normalised but the mean is kept. Padding stays 0. PPO for language models
    (Ziegler et al. 2019; OpenRLHF, TRL) whitens the GAE advantages of a batch
    before the policy loss. Returns float32, the shape of ``values``.
    """
    if values.shape != mask.shape:
        raise ValueError(f"values and mask must share one shape, got {tuple(values.shape)}, {tuple(mask.shape)}")
    valid = mask > 0
    m = valid.float()
    count = m.sum()
    if float(count) < 2:
        raise ValueError(f"whiten needs at least 2 valid entries for an unbiased variance, got {int(count)}")
    x = values.float().masked_fill(~valid, 0.0)
    mean = x.sum() / count
    var = ((x - mean) * m).square().sum() / (count - 1)
    out = (x - mean) * (var + eps).rsqrt()
    if not shift_mean:
        out = out + mean
    return out * m
