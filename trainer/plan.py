"""What a ``thinkgym train`` run would do, checked without loading the model or
downloading data: :func:`check_run` before any run, :func:`describe_plan` for
``--dry-run``. Torch-free, like the config it reads, so a bad config is
reported before torch is imported."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from gymnasium.envs.registration import load_env_creator

import thinkgym.envs.registry
from thinkgym.envs import TextEnv
from thinkgym.envs.tasks import FORMATS
from thinkgym.trainer.config import Config, offline, rows_per_step
from thinkgym.trainer.models.builtin import check_model
from thinkgym.trainer.typed_config import ConfigError


def describe_plan(config: Config, processes: int = 1) -> str:
    """What a run on ``processes`` data-parallel processes would do, without
    loading the model: for ``--dry-run``, after :func:`check_run`."""
    algo, t, s = config.algorithm.resolve(), config.train, config.sampling
    rows, what = rows_per_step(config, algo.objective)
    from_data = offline(config)
    lines = [f"model        {config.model.path} ({config.model.dtype}, device {t.device})",
             f"processes    {processes}" + (f" ({t.strategy}, {rows // processes if from_data else t.prompts_per_step // processes} "
                                            f"{'rows' if from_data else 'prompts'} each)" if processes > 1 else ""),
             "envs         " + ", ".join(f"{e.id} (weight {e.weight}{', think_format ' + str(e.think_format) if e.think_format else ''}"
                                       f"{', tag_count ' + str(e.tag_count) if e.tag_count else ''})"
                                       for e in config.envs) + _envs_role(algo.objective, from_data),
             *([f"data         {config.data.path}" + (f", held-out pairs {config.data.eval_path}"
                                                        if config.data.eval_path else "")] if from_data else []),
             f"batch        {what} = {rows} {'rows' if from_data else 'completions'} per step, "
             f"mini-batch {t.mini_batch_size}, micro-batch {t.micro_batch_size}"
             f"{' (bucketed by length)' if t.bucket_by_length else ''}, mu={t.epochs_per_batch}",
             f"sampling     temperature {s.temperature}, top_p {s.top_p}, max_new_tokens {s.max_new_tokens}, stop {s.stop}, "
             f"engine {s.engine}" + (" (held-out accuracy)" if from_data else "")
             + (f", one step off-policy (tis_cap {s.tis_cap})" if t.off_policy_steps else ""),
             _objective_line(config, algo),
             f"optimizer    AdamW lr {t.lr}, warmup {t.warmup_steps}, then {t.lr_schedule}, weight decay {t.weight_decay}, grad clip {t.max_grad_norm}",
             *([_critic_line(config)] if algo.uses_critic else []),
             f"steps        {t.steps}, checkpoint every {config.output.checkpoint_every} to {config.output.dir}",
             "tokens/step  " + (f"{rows} rows from the file" if from_data else
                                 f"<= {rows * s.max_new_tokens} generated (+ prompts)") + f", trained {t.epochs_per_batch}x"]
    return "\n".join(lines)


def _envs_role(objective: str, from_data: bool) -> str:
    if objective == "reward_model":
        return " (unused: the held-out score is the pairwise accuracy on data.eval_path)"
    return " (held-out accuracy only)" if from_data else ""


def _objective_line(config: Config, algo) -> str:
    r = config.rejection
    if algo.objective == "dpo":
        return _dpo_line(config)
    if algo.objective == "sft":
        return "algorithm    sft: mean NLL of the completion tokens"
    if algo.objective == "reward_model":
        return f"algorithm    reward_model: Bradley-Terry, margin {config.reward_model.margin}, value head on the decoder"
    if algo.objective == "rejection_sampling":
        return (f"algorithm    rejection_sampling: sampled by {r.teacher or 'the policy'}, kept if reward >= {r.min_reward}"
                + (f", top {r.top_k} per prompt" if r.top_k else "") + ", SFT loss on the kept")
    return f"algorithm    {config.algorithm.preset}: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(algo).items()
                                                             if k != "paper")


def _dpo_line(config: Config) -> str:
    d = config.dpo
    reference = f"refreshed every {d.reference_refresh} steps" if d.reference_refresh else "fixed"
    pairs = "from the file" if config.data.path else "each group's best and worst completion (groups of equal rewards resampled)"
    return f"algorithm    dpo: loss {d.loss}, beta {d.beta}, nll_coef {d.nll_coef}, reference {reference}; pairs: {pairs}"


def _critic_line(config: Config) -> str:
    c = config.critic
    if c.shared_trunk:
        return f"critic       value head on the policy's decoder, value loss x {c.vf_coef} in the policy's update"
    return (f"critic       value head on {c.path or config.model.path}, AdamW lr {c.lr or config.train.lr}, "
            f"{c.warmup_steps} steps before the policy moves")


def check_run(config: Config, processes: int = 1) -> None:
    """What a run needs beyond a valid config, checked without loading the model
    or data: the batch splits over ``processes``; a local model path is a
    checkpoint or a built-in name that can be built; each env id exists and takes its options (training and
    held-out), and a local data file exists."""
    check_processes(config, processes)
    check_engine(config)
    for path in [config.model.path, *model_paths(config)]:
        check_model(path)
    for key in ("path", "eval_path"):
        path = getattr(config.data, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"data.{key}: dataset file not found: {path}")
    for i, spec in enumerate(config.envs):
        for kwargs in (spec.kwargs, {**spec.kwargs, **spec.eval_kwargs}):
            check_env_options(f"envs[{i}]", spec.id, kwargs)


def model_paths(config: Config) -> list[str]:
    """The checkpoints a run loads besides its policy: a critic, an env's reward
    models, a rejection-sampling teacher."""
    algo = config.algorithm.resolve()
    return ([config.critic.path] if algo.uses_critic and config.critic.path else []) + \
        [rm.model for e in config.envs for rm in e.reward_models] + \
        ([config.rejection.teacher] if algo.objective == "rejection_sampling" and config.rejection.teacher else [])


def check_engine(config: Config) -> None:
    """``sampling.engine: vllm`` needs vLLM, at a tested version (the model's
    architecture is checked once the model is loaded)."""
    if config.sampling.engine == "vllm":
        from thinkgym.trainer.engines.vllm import VLLMUnavailable, check_vllm
        try:
            check_vllm()
        except VLLMUnavailable as exc:
            raise ConfigError(str(exc)) from None


def check_processes(config: Config, processes: int) -> None:
    """The step's prompts (or rows) and mini-batches split evenly over ``processes``."""
    t = config.train
    if offline(config) and config.data.batch_size % processes:
        raise ConfigError(f"data.batch_size ({config.data.batch_size}) must divide by the number of processes "
                          f"({processes})")
    if t.prompts_per_step % processes or t.mini_batch_size % processes:
        raise ConfigError(f"train.prompts_per_step ({t.prompts_per_step}) and train.mini_batch_size "
                          f"({t.mini_batch_size}) must divide by the number of processes ({processes})")


def check_env_options(key: str, env_id: str, kwargs: dict) -> None:
    """The env id exists, its constructor takes these options, and a local data
    file exists; without building the env (a hub dataset may be unreachable)."""
    env_spec = thinkgym.envs.registry.spec(env_id)
    creator = env_spec.entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    try:
        signature = inspect.signature(creator)
        bound = signature.bind(**{**env_spec.kwargs, **kwargs})
        rest = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
        if rest and bound.arguments.get(rest[0]):  # env factories pass extra options on to TextEnv
            inspect.signature(TextEnv).bind(tasks=[], rewards=[], **bound.arguments[rest[0]])
    except TypeError as exc:
        raise ConfigError(f"{key}.kwargs: {env_id} does not take these options ({exc})") from None
    source = kwargs.get("source")
    if isinstance(source, str) and Path(source).suffix in FORMATS and not Path(source).is_file():
        raise ConfigError(f"{key}.kwargs.source: dataset file not found: {source}")
