"""The algorithm choices of a training run (:class:`AlgorithmConfig`) and the named
recipes (:data:`PRESETS`), each from its paper.

Torch-free, so a config is validated before torch loads; the tensor functions
these choices select live in :mod:`thinkgym.trainer.losses`, which
re-exports this module's names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from thinkgym.trainer.advantages import ESTIMATORS, TOKEN_ESTIMATORS

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Loss aggregations of :func:`~thinkgym.trainer.losses.aggregate`."""
KL_KINDS = ("k1", "k2", "k3")
"""KL estimators of :func:`~thinkgym.trainer.losses.kl_penalty`."""
OVERLONG = (None, "soft_penalty", "mask_truncated")
LOSS_NAMES = ("ppo_clip", "cispo")
"""Policy losses of :data:`~thinkgym.trainer.losses.LOSSES` (a test keeps the two equal)."""
OBJECTIVES = ("grpo", "ppo", "dpo", "sft", "rejection_sampling", "reward_model")
"""The training objectives, one module each under trainer/ (``grpo.py``, ``ppo.py``, ``dpo.py``, ``sft.py``,
``rejection_sampling.py``, ``reward_model.py``)."""


@dataclass(frozen=True)
class AlgorithmConfig:
    """Every algorithm choice of a training run; ``PRESETS`` holds the named ones.

    Attributes:
        objective: the training objective, one of ``OBJECTIVES``: ``"grpo"``, the
            group-relative family (every preset but ``ppo``), ``"ppo"`` with a
            critic, ``"dpo"``, DPO on preference pairs or, online, on each group's
            best and worst completion (the config's ``dpo`` section), ``"sft"``
            on demonstrations, ``"rejection_sampling"`` (fine-tuning on the
            policy's or a teacher's best samples) or ``"reward_model"`` (a
            Bradley-Terry reward model). The last three ignore the RL fields.
        estimator: advantage estimator: a group one, a key of ``ESTIMATORS``, or
            ``"gae"`` (``TOKEN_ESTIMATORS``: PPO with a critic).
        loss: policy loss, one of ``LOSS_NAMES``: ``"ppo_clip"`` (``policy_loss``)
            or ``"cispo"`` (``cispo_loss``).
        clip_low, clip_high: the ratio (``ppo_clip``) or the importance-sampling
            weight (``cispo``) is clipped to ``[1 - clip_low, 1 + clip_high]``;
            ``cispo`` also takes ``clip_low = 1``, no lower bound.
        dual_clip: dual-clip bound ``c > 1`` for negative advantages, or None (``ppo_clip`` only).
        agg: loss aggregation, one of ``AGGREGATIONS``.
        ratio_level: ``"token"`` (PPO/GRPO) or ``"sequence"`` (GSPO; ``ppo_clip`` only).
        kl: KL estimator for the penalty, one of ``KL_KINDS``.
        beta: KL coefficient; 0 drops the penalty and the reference model. With
            a group estimator the penalty goes into the loss (GRPO); with
            ``"gae"`` it goes into the per-token reward, ``r_t - beta * kl_t``
            (InstructGPT, Ouyang et al. 2022).
        dynamic_sampling: DAPO: drop groups whose rewards are all equal
            (``informative_groups``) and sample more prompts.
        overlong: what to do with answers that hit the length limit: None;
            ``"soft_penalty"`` (DAPO's ``thinkgym.rewards.overlong_penalty`` added to the reward);
            ``"mask_truncated"`` (DAPO's overlong filtering: their tokens leave the loss mask).
        overlong_buffer: ``L_cache`` as a fraction of the max completion length.
        gamma, lam: GAE's discount and ``lambda`` (``"gae"`` only), each in ``[0, 1]``.
        whiten_advantages: whiten the GAE advantages over the batch's valid tokens (``"gae"`` only).
        vf_clip: the critic's value-clip range (``value_loss``'s ``clip``), > 0, or None for no clip.
        paper: where the recipe comes from.
    """

    objective: str = "grpo"
    estimator: str = "grpo"
    loss: str = "ppo_clip"
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
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    vf_clip: float | None = 0.2
    paper: str = ""

    @property
    def uses_critic(self) -> bool:
        """PPO: a critic's values make the advantages (``gae``), and ``-beta * KL_t``
        goes into the per-token reward; the group estimators put ``beta * KL`` into the loss."""
        return self.objective == "ppo"

    @property
    def informative_only(self) -> bool:
        """Train on groups whose rewards differ only: DAPO's dynamic sampling, and DPO (a pair needs two rewards)."""
        return self.dynamic_sampling or self.objective == "dpo"

    @property
    def uses_reference(self) -> bool:
        """A frozen reference model: for the KL (``beta > 0``), and always for DPO."""
        return self.objective == "dpo" or (self.beta > 0 and self.objective in ("grpo", "ppo"))

    def __post_init__(self):
        cispo = self.loss == "cispo"
        ppo = self.objective == "ppo"
        checks = {
            "objective": (self.objective in OBJECTIVES, list(OBJECTIVES)),
            "estimator": (self.estimator in TOKEN_ESTIMATORS if ppo else self.estimator in ESTIMATORS,
                          f"{list(TOKEN_ESTIMATORS)} for objective ppo" if ppo else
                          f"one of {sorted(ESTIMATORS)} for objective grpo ({list(TOKEN_ESTIMATORS)}: objective ppo)"),
            "loss": (self.loss in LOSS_NAMES, list(LOSS_NAMES)),
            "clip_low": (0.0 <= self.clip_low <= 1.0 if cispo else 0.0 <= self.clip_low < 1.0,
                         "a number in [0, 1] for loss cispo" if cispo else "a number in [0, 1)"),
            "clip_high": (self.clip_high >= 0.0, "a number >= 0"),
            "dual_clip": (self.dual_clip is None if cispo else self.dual_clip is None or self.dual_clip > 1.0,
                          "None for loss cispo" if cispo else "None or a number > 1"),
            "agg": (self.agg in AGGREGATIONS, list(AGGREGATIONS)),
            "ratio_level": (self.ratio_level == "token" if cispo else self.ratio_level in ("token", "sequence"),
                            ["token"] if cispo else ["token", "sequence"]),
            "kl": (self.kl in KL_KINDS, list(KL_KINDS)),
            "beta": (self.beta >= 0.0, "a number >= 0"),
            "dynamic_sampling": (isinstance(self.dynamic_sampling, bool), "true or false"),
            "overlong": (self.overlong in OVERLONG, list(OVERLONG)),
            "overlong_buffer": (0.0 < self.overlong_buffer <= 1.0, "a fraction in (0, 1]"),
            "gamma": (0.0 <= self.gamma <= 1.0, "a number in [0, 1]"),
            "lam": (0.0 <= self.lam <= 1.0, "a number in [0, 1]"),
            "whiten_advantages": (isinstance(self.whiten_advantages, bool), "true or false"),
            "vf_clip": (self.vf_clip is None or self.vf_clip > 0.0, "None or a number > 0"),
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
    # PPO with a critic (Schulman et al. 2017) as in RLHF (InstructGPT, Ouyang et al.
    # 2022; TRL's PPOTrainer, OpenRLHF): per-token GAE advantages (gamma 1, lam
    # 0.95) whitened over the batch, clip 0.2, a clipped value loss (0.2), token
    # means. The KL is not in the loss: beta * k1 goes into the per-token reward,
    # r_t - beta * (logp_t - ref_t), InstructGPT style (TRL's default kl_coef 0.05).
    "ppo": AlgorithmConfig(
        objective="ppo", estimator="gae", loss="ppo_clip", clip_low=0.2, clip_high=0.2, agg="token-mean", kl="k1", beta=0.05,
        gamma=1.0, lam=0.95, whiten_advantages=True, vf_clip=0.2,
        paper="Schulman et al. 2017, PPO (arXiv:1707.06347); Ouyang et al. 2022, InstructGPT (arXiv:2203.02155)"),
    # CISPO (MiniMax-M1, Chen et al. 2025): group-normalised advantages, token means
    # (1 / sum_i |o_i|), no KL; the importance-sampling weight is clipped and
    # detached, so every token keeps its gradient. The paper sets no lower bound
    # (clip_low 1: weights in [0, 1 + clip_high]) and tunes only the upper one
    # without publishing it; clip_high 4 caps the weight at 5, TRL's recommended
    # epsilon_high for cispo (ScaleRL's eps_max, Khatri et al. 2025, arXiv:2510.13786).
    "cispo": AlgorithmConfig(
        estimator="grpo", loss="cispo", clip_low=1.0, clip_high=4.0, agg="token-mean", beta=0.0,
        paper="Chen et al. 2025, MiniMax-M1, CISPO (arXiv:2506.13585)"),
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
    header = ("| preset | advantages | loss | loss aggregation | clip (low / high) | ratio | KL (beta) "
              "| dynamic sampling | overlong | paper |")
    rows = [header, "|" + " --- |" * 10]
    for name, c in PRESETS.items():
        gae = c.estimator in TOKEN_ESTIMATORS
        advantages = f"{c.estimator} (gamma {c.gamma:g}, lam {c.lam:g})" if gae else c.estimator
        kl = (f"{c.kl} ({c.beta:g})" + (" in reward" if gae else "")) if c.beta else "none"
        overlong = f"{c.overlong} ({c.overlong_buffer:g})" if c.overlong else "-"
        rows.append(f"| `{name}` | {advantages} | {c.loss} | {c.agg} | {c.clip_low:g} / {c.clip_high:g} "
                    f"| {c.ratio_level} | {kl} | {'yes' if c.dynamic_sampling else 'no'} | {overlong} | {c.paper} |")
    return "\n".join(rows)
