"""The one configuration tree of a training run, loaded from YAML and ``--set``.

The defaults are the embedded default run (``configs/tiny.yaml``): the tiny
built-in model, Dr. GRPO on two-digit arithmetic, a few minutes on 2 CPU cores.

Every hyper-parameter is visible here, with its default. ``algorithm.preset``
picks a named recipe (``grpo``, ``dr_grpo``, ``dapo``, ``rloo``, ``gspo``, ``cispo``, and
``ppo`` with a critic: the ``critic`` section); any
field set next to it overrides the preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from thinkgym.trainer.algorithm_config import AlgorithmConfig, preset
from thinkgym.trainer.models.tiny_tasks import EVAL_SEED, PRETRAIN_SEED, TINY_ENV
from thinkgym.trainer.sampling import Sampling, sampling_problems
from thinkgym.trainer.typed_config import ConfigError, apply_overrides, build, read_yaml


@dataclass
class ModelConfig:
    path: str = "tiny"  # a built-in name ("tiny", "smollm2-135m-instruct"; built on first use), a checkpoint dir or a hub name
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) instead of all weights; the reference is the adapter-free model
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class RewardModelConfig:
    """A trained reward model (``objective: reward_model``) as a reward component
    of an env: ``weight x r(prompt, completion)`` is added to each completion's
    reward, scored in batches on the trainer's device."""

    model: str  # a reward-model checkpoint: a causal LM folder with value_head.pt
    weight: float = 1.0
    name: str = "reward_model"  # the component's name in the metrics (reward/<name>)


@dataclass
class EnvConfig:
    id: str
    weight: float = 1.0  # share of prompts drawn from this env
    think_format: Optional[float] = None  # weight of think_format_reward, if added
    tag_count: Optional[float] = None  # weight of tag_count_reward (partial format credit), if added
    kwargs: dict[str, Any] = field(default_factory=dict)
    reward_models: list[RewardModelConfig] = field(default_factory=list)  # learnt reward components, added to the env's
    eval_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides for the held-out env, e.g. {seed: 0} or {split: test}


@dataclass
class AlgorithmSection:
    """``preset`` plus overrides of any ``AlgorithmConfig`` field."""

    preset: Literal["grpo", "dr_grpo", "dapo", "rloo", "gspo", "ppo", "cispo"] = "dr_grpo"
    objective: Optional[Literal["grpo", "ppo", "dpo", "sft", "rejection_sampling", "reward_model"]] = None
    # trainer/<objective>.py; the preset's by default
    estimator: Optional[str] = None
    loss: Optional[str] = None
    clip_low: Optional[float] = None
    clip_high: Optional[float] = None
    dual_clip: Optional[float] = None
    agg: Optional[str] = None
    ratio_level: Optional[str] = None
    kl: Optional[str] = None
    beta: Optional[float] = None
    dynamic_sampling: Optional[bool] = None
    overlong: Optional[str] = None
    overlong_buffer: Optional[float] = None
    gamma: Optional[float] = None
    lam: Optional[float] = None
    whiten_advantages: Optional[bool] = None
    vf_clip: Optional[float] = None  # 0: no value clipping
    max_resample_rounds: int = 4  # dynamic sampling: extra generation rounds before training on what there is

    def resolve(self) -> AlgorithmConfig:
        overrides = {f.name: getattr(self, f.name) for f in dataclasses.fields(AlgorithmConfig)
                     if hasattr(self, f.name) and getattr(self, f.name) is not None}
        if overrides.get("vf_clip") == 0:  # None here means "the preset's"
            overrides["vf_clip"] = None
        try:
            return preset(self.preset, **overrides)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None  # the message names the key: algorithm.<field>


@dataclass
class CriticConfig:
    """PPO's value model (``algorithm.objective: ppo``); unused by the other objectives."""

    path: Optional[str] = None  # None: the policy's model; else a critic checkpoint or a causal LM to put a value head on
    lr: Optional[float] = None  # None: train.lr
    warmup_steps: int = 0  # steps that train the critic alone before the policy moves
    shared_trunk: bool = False  # True: no second model; a value head on the policy's decoder, trained in its update
    vf_coef: float = 0.1  # shared_trunk: weight of the value loss in the joint loss (TRL's PPO default)


@dataclass
class DPOConfig:
    """Online DPO (``algorithm.objective: dpo``): each group's highest- and
    lowest-reward completions make a pair; unused by the other objectives."""

    loss: Literal["sigmoid", "ipo"] = "sigmoid"  # DPO (Rafailov et al. 2023) or IPO (Azar et al. 2023)
    beta: float = 0.1  # the implicit reward's scale (DPO's beta; not algorithm.beta, the RL objectives' KL)
    nll_coef: float = 0.0  # weight of the chosen completions' per-token NLL, added to the loss (RPO)
    reference_refresh: int = 0  # iterated DPO: every this many steps the reference becomes the policy; 0: fixed


@dataclass
class DataConfig:
    """The dataset file of the offline objectives (trainer/data.py has its layouts):
    ``sft`` reads demonstrations; ``reward_model``, and ``dpo`` when given one,
    read preference pairs."""

    path: Optional[str] = None  # JSONL/JSON/Parquet/CSV; dpo without one makes its pairs online
    eval_path: Optional[str] = None  # reward_model: held-out pairs, for the pairwise accuracy before and after
    batch_size: int = 32  # examples (sft) or pairs (dpo, reward_model) per step


@dataclass
class RejectionConfig:
    """Rejection-sampling fine-tuning (``algorithm.objective: rejection_sampling``):
    each step samples ``train.group_size`` completions per prompt, keeps the good
    ones and fine-tunes on them (``train.epochs_per_batch`` passes)."""

    min_reward: float = 1.0  # keep completions whose reward is at least this
    top_k: int = 0  # > 0: of those, keep at most the k best of each prompt
    teacher: Optional[str] = None  # distillation: a checkpoint that samples instead of the policy (same tokenizer)


@dataclass
class RewardModelTraining:
    """``algorithm.objective: reward_model``: a Bradley-Terry reward model, a value
    head on the model's decoder, trained on ``data``'s preference pairs."""

    margin: float = 0.0  # l = -log sigmoid(r_w - r_l - margin)


@dataclass
class TrainConfig:
    steps: int = 250
    prompts_per_step: int = 16  # B
    group_size: int = 8  # G completions per prompt
    epochs_per_batch: int = 1  # mu
    mini_batch_size: int = 128  # completions per optimizer step
    micro_batch_size: int = 32  # completions per forward/backward (gradient accumulation)
    bucket_by_length: bool = True  # micro-batches of rows of similar length, trimmed of all-padding columns
    lr: float = 1e-4
    warmup_steps: int = 10  # the lr rises linearly over these steps
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # after warmup: kept, or decayed to 0 at the last step
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    cpu_threads: int = 1  # torch intra-op threads; 0: torch's default. The tiny model runs fastest on 1
    score_workers: int = 0  # reward scoring processes; 0: one per core
    strategy: Literal["ddp", "fsdp"] = "ddp"  # >1 process: ddp copies the model; fsdp shards it, its grads and AdamW state
    off_policy_steps: int = 0  # 1: step s+1's rollouts are sampled (from a copy of step s's weights) while step s trains


@dataclass
class OutputConfig:
    dir: str = "runs/default"
    log_every: int = 1
    samples_every: int = 10
    samples_per_log: int = 4
    checkpoint_every: int = 50
    eval_tasks: int = 200  # held-out tasks (the first of each env's eval env) for the before/after accuracy


def tiny_env() -> EnvConfig:
    """The tiny model's arithmetic env: trained on fresh tasks (a seed of its own),
    evaluated on the held-out tasks the model never saw in pretraining."""
    kwargs = {k: v for k, v in TINY_ENV.items() if k != "id"}
    return EnvConfig(id=TINY_ENV["id"], kwargs={**kwargs, "seed": PRETRAIN_SEED + 1}, eval_kwargs={"seed": EVAL_SEED})


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    envs: list[EnvConfig] = field(default_factory=lambda: [tiny_env()])
    sampling: Sampling = field(default_factory=Sampling)  # trainer/sampling.py
    algorithm: AlgorithmSection = field(default_factory=AlgorithmSection)
    critic: CriticConfig = field(default_factory=CriticConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    reward_model: RewardModelTraining = field(default_factory=RewardModelTraining)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self):
        check(self)


def check(c: Config) -> None:
    """Range and consistency checks that types alone cannot express."""
    t = c.train
    positive = {"train.steps": t.steps, "train.prompts_per_step": t.prompts_per_step,
                "train.epochs_per_batch": t.epochs_per_batch, "train.mini_batch_size": t.mini_batch_size,
                "train.micro_batch_size": t.micro_batch_size}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    algo = c.algorithm.resolve()
    if t.group_size < (1 if algo.objective in ("ppo", "rejection_sampling") else 2):
        raise ConfigError(f"train.group_size must be >= 2 (advantages compare completions of a prompt), got "
                          f"{t.group_size}; PPO (a critic's values) and rejection sampling take any group size")
    if c.critic.lr is not None and not 0 < c.critic.lr < 1:
        raise ConfigError(f"critic.lr must be in (0, 1), got {c.critic.lr}")
    if c.critic.warmup_steps < 0:
        raise ConfigError(f"critic.warmup_steps must be >= 0, got {c.critic.warmup_steps}")
    if c.critic.vf_coef <= 0:
        raise ConfigError(f"critic.vf_coef must be > 0, got {c.critic.vf_coef}")
    if c.critic.shared_trunk:  # the head trains with the policy: its model, optimizer and steps
        for key, value in {"path": c.critic.path, "lr": c.critic.lr, "warmup_steps": c.critic.warmup_steps}.items():
            if value:
                raise ConfigError(f"critic.{key} ({value}) is for a separate critic; with critic.shared_trunk the "
                                  f"value head is on the policy's model and trains in its update (train.lr)")
    if algo.objective == "dpo":
        d = c.dpo
        problems = [(d.beta <= 0, f"dpo.beta must be > 0, got {d.beta}"),
                    (d.nll_coef < 0, f"dpo.nll_coef must be >= 0, got {d.nll_coef}"),
                    (d.reference_refresh < 0, f"dpo.reference_refresh must be >= 0, got {d.reference_refresh}"),
                    (d.reference_refresh and c.model.lora_rank, "dpo.reference_refresh needs full fine-tuning: a LoRA "
                     "run's reference is its base model"),
                    (algo.beta > 0, f"algorithm.beta ({algo.beta}) is the RL objectives' KL; DPO's is dpo.beta"),
                    (d.reference_refresh and c.data.path, "dpo.reference_refresh is for online DPO: a "
                     "preference file (data.path) is trained against a fixed reference")]
        for failed, message in problems:
            if failed:
                raise ConfigError(message)
    if algo.objective in ("dpo", "reward_model") and (t.micro_batch_size % 2 or t.mini_batch_size % 2):
        raise ConfigError(f"train.micro_batch_size and train.mini_batch_size must be even under {algo.objective}: "
                          "a pair's two completions go together")
    check_offline(c, algo.objective)
    if algo.objective == "reward_model" and c.model.lora_rank:
        raise ConfigError("algorithm.objective reward_model trains the whole model (its checkpoint is what an env "
                          "loads as a reward): set model.lora_rank to 0")
    if algo.objective == "rejection_sampling" and c.rejection.top_k < 0:
        raise ConfigError(f"rejection.top_k must be >= 0, got {c.rejection.top_k}")
    if not 0 < t.lr < 1:
        raise ConfigError(f"train.lr must be in (0, 1), got {t.lr}")
    if t.off_policy_steps not in (0, 1):
        raise ConfigError(f"train.off_policy_steps must be 0 (on-policy) or 1, got {t.off_policy_steps}")
    if t.off_policy_steps and algo.objective != "grpo":
        raise ConfigError(f"train.off_policy_steps is for the group-relative objectives; algorithm.objective "
                          f"{algo.objective} samples on-policy")
    if t.off_policy_steps and c.sampling.engine == "vllm" and c.sampling.vllm.sleep:
        raise ConfigError("sampling.vllm.sleep frees the engine's GPU memory while the policy trains, but with "
                          "train.off_policy_steps: 1 the engine samples then: set one or the other")
    if t.off_policy_steps and not c.sampling.tis_cap:
        raise ConfigError("train.off_policy_steps: 1 needs sampling.tis_cap (e.g. 2.0): the importance weight "
                          "p_policy / p_rollout, truncated, is what corrects rollouts one step stale")
    problems = sampling_problems(c.sampling, key=lambda name: f"sampling.{name}")
    if problems:
        raise ConfigError(problems[0])
    rows, what = rows_per_step(c, algo.objective)
    # Rejection sampling keeps a varying share of its rows: its last mini-batch may be smaller.
    if rows % t.mini_batch_size and algo.objective != "rejection_sampling":
        raise ConfigError(f"train.mini_batch_size ({t.mini_batch_size}) must divide {what} ({rows})")
    if t.mini_batch_size % t.micro_batch_size:
        raise ConfigError(f"train.micro_batch_size ({t.micro_batch_size}) must divide train.mini_batch_size ({t.mini_batch_size})")
    if not c.envs:
        raise ConfigError("envs: at least one environment is needed")
    for i, env in enumerate(c.envs):
        if env.weight <= 0:
            raise ConfigError(f"envs[{i}].weight must be > 0, got {env.weight}")
        for k, rm in enumerate(env.reward_models):
            if rm.weight == 0 or not rm.name or rm.name in {r.name for r in env.reward_models[:k]}:
                raise ConfigError(f"envs[{i}].reward_models[{k}]: needs a weight other than 0 and a name of its own, "
                                  f"got weight {rm.weight}, name {rm.name!r}")


OFFLINE = ("sft", "reward_model")
"""Objectives that train on ``data.path`` alone (``dpo`` does when it is given one)."""


def offline(c: Config) -> bool:
    """Whether the run trains on a dataset file rather than on samples."""
    objective = c.algorithm.resolve().objective
    return objective in OFFLINE or (objective == "dpo" and c.data.path is not None)


def rows_per_step(c: Config, objective: str) -> tuple[int, str]:
    """(completions a step trains on, how the config makes that number)."""
    if offline(c):
        per = 1 if objective == "sft" else 2
        return c.data.batch_size * per, "data.batch_size" + ("" if per == 1 else " x 2 (a pair's completions)")
    return c.train.prompts_per_step * c.train.group_size, "prompts_per_step x group_size"


def check_offline(c: Config, objective: str) -> None:
    """The ``data`` section against the objective."""
    d = c.data
    if objective in OFFLINE and not d.path:
        raise ConfigError(f"algorithm.objective {objective} trains on a dataset: set data.path")
    if d.path and objective not in OFFLINE + ("dpo",):
        raise ConfigError(f"data.path is read by the sft, reward_model and dpo objectives, not {objective}")
    if objective == "reward_model" and not d.eval_path:
        raise ConfigError("algorithm.objective reward_model reports its pairwise accuracy on held-out pairs: set "
                          "data.eval_path")
    if d.eval_path and objective != "reward_model":
        raise ConfigError("data.eval_path holds held-out pairs for objective reward_model; the other objectives "
                          "report accuracy on the envs' held-out tasks")
    if d.batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {d.batch_size}")


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """The config from a YAML file (default: all defaults) with ``--set`` overrides."""
    data = read_yaml(path) if path else {}
    return build(Config, apply_overrides(data, overrides or []))
