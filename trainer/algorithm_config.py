"""The algorithm choices of a training run (:class:`AlgorithmConfig`) and the named
recipes (:data:`PRESETS`), each from its paper.

Torch-free, so a config is validated before torch loads; the tensor functions
these choices select live in :mod:`thinkgym.trainer.algorithms`, which
re-exports this module's names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from thinkgym.trainer.advantages import ESTIMATORS

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Loss aggregations of :func:`~thinkgym.trainer.algorithms.aggregate`."""
KL_KINDS = ("k1", "k2", "k3")
"""KL estimators of :func:`~thinkgym.trainer.algorithms.kl_penalty`."""
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
