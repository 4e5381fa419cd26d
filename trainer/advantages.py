"""Group-relative advantage estimators, by name, and :func:`group_advantages`.

Each estimator maps the rewards of ``B`` groups, ``[B, G]``, to one advantage per
completion, with its formula and paper in the docstring. They are written with
tensor methods only: this module never imports torch, so a config naming an
estimator is checked (:class:`~thinkgym.trainer.algorithm_config.AlgorithmConfig`)
before torch loads. :mod:`thinkgym.trainer.algorithms` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Estimator = Callable[["torch.Tensor", float], "torch.Tensor"]
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
