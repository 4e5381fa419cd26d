"""A training run, whatever its objective: set-up, resume, the step loop,
checkpoints, logs and the held-out accuracy before and after.

``algorithm.objective`` picks the objective (``OBJECTIVES``): a class, in a file
of its own read top to bottom (``grpo.py``, ``ppo.py``, ``dpo.py``), whose
``step`` collects a batch and trains on it. The run owns what every objective
shares: the policy, its reference, optimizer and learning-rate schedule, the
task sampler, the RNGs; an objective adds its own models (PPO's critic) and
saves them through ``checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

import thinkgym
from thinkgym.trainer import checkpoint as ckpt, distributed
from thinkgym.trainer.accumulate import lr_factor, make_optimizer
from thinkgym.trainer.algorithm_config import AlgorithmConfig
from thinkgym.trainer.collect import Batch, InFlight, TaskSampler, prompt_key
from thinkgym.trainer.config import Config, offline
from thinkgym.trainer.data import Dataset, load_preferences, load_sft
from thinkgym.trainer.engines import holds_own_weights, make_engine
from thinkgym.trainer.engines.snapshot import SnapshotEngine
from thinkgym.trainer.engines.vllm import VLLMEngine
from thinkgym.trainer.dpo import DPO
from thinkgym.trainer.grpo import GRPO
from thinkgym.trainer.models.builtin import check_model, resolve_model
from thinkgym.trainer.models.critic import attach_shared_head, split_shared_head
from thinkgym.trainer.models.policy import Policy, load_policy, load_reference
from thinkgym.trainer.plan import check_engine, check_processes, model_paths
from thinkgym.trainer.ppo import PPO, saved_shared_head
from thinkgym.trainer.rejection_sampling import RejectionSampling
from thinkgym.trainer.reward_model import ModelReward, RewardModelObjective, saved_head
from thinkgym.trainer.sft import SFT
from thinkgym.trainer.typed_config import ConfigError


class Objective(Protocol):
    """A training objective: what one step of a run does."""

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        """Collect a batch and train on it. Returns the batch (its metrics and
        samples are logged) and the update's statistics, ``time/update`` among them."""

    def evaluate(self, progress: bool) -> dict[str, float]:
        """The held-out score before and after training (every rank calls it, rank 0 reports it):
        accuracy on the envs' held-out tasks (:func:`held_out_accuracy`), or the
        objective's own (the reward model's pairwise accuracy)."""

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """Called on every rank when the run checkpoints (it may gather shards),
        with the policy's gathered weights (None where it holds whole tensors):
        entries to add to the trainer state, and a writer of the objective's own
        files into the checkpoint folder (called on rank 0), or None."""


OBJECTIVES: dict[str, Callable[["Run"], Objective]] = {
    "grpo": GRPO, "ppo": PPO, "dpo": DPO, "sft": SFT, "rejection_sampling": RejectionSampling,
    "reward_model": RewardModelObjective}
"""``algorithm.objective`` -> the objective's class, constructed with the :class:`Run`."""


@dataclasses.dataclass
class Run:
    """What every objective works with, set up by :func:`setup_run`."""

    config: Config
    algo: AlgorithmConfig
    device: str
    base_path: str  # the base model's folder (built-in names resolved)
    checkpoint: Path | None  # the checkpoint this run resumes from
    sampler: TaskSampler
    eval_envs: list  # the held-out envs
    data: Dataset | None  # the offline objectives' rows (data.path)
    eval_data: Dataset | None  # the reward model's held-out pairs (data.eval_path)
    workers: int | None  # scoring processes (None: one per core)
    policy: Policy
    module: torch.nn.Module  # the policy's training forward, parallel-wrapped (:func:`distributed.wrap`)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    shuffle_rng: torch.Generator  # mini-batch order
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)  # rollouts sampled while a step trains


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def set_cpu_threads(count: int) -> None:
    """Run torch on ``count`` intra-op threads (``train.cpu_threads``, ``eval --threads``);
    0 keeps torch's default. On a 2-core machine that other work keeps busy, small
    models sample 5-50x faster on one thread than on two; idle, two are about
    1.25x faster (benchmarks/eval_threads.py)."""
    if count:
        torch.set_num_threads(count)


def make_envs(config: Config, held_out: bool) -> list:
    envs = []
    for spec in config.envs:
        kwargs = {**spec.kwargs, **(spec.eval_kwargs if held_out else {})}
        envs.append(thinkgym.make(spec.id, think_format=spec.think_format, tag_count=spec.tag_count, **kwargs))
    return envs


def load_data(config: Config) -> tuple[Dataset | None, Dataset | None]:
    """The checked rows of ``data.path`` and ``data.eval_path``, each None when unset
    or when the objective samples its own data."""
    d = config.data
    if not offline(config):
        return None, None
    train = load_sft(d.path) if config.algorithm.resolve().objective == "sft" else load_preferences(d.path)
    return train, load_preferences(d.eval_path) if d.eval_path else None


def warn_if_sandbox_weakened(envs, log) -> None:
    """Say so when the envs run code in a sandbox weaker than this machine allows."""
    from thinkgym.rewards import code_reward
    from thinkgym.rewards.sandbox import isolation_warning

    if any(r.fn is code_reward for env in envs for r in env.unwrapped.rewards):
        warning = isolation_warning()
        if warning:
            log(f"WARNING: {warning}")


def setup_run(config: Config, envs, eval_envs, data: tuple[Dataset | None, Dataset | None], resume: bool,
              log: Callable[[str], None]) -> Run:
    """Load the models and build everything a step needs (``data``: the checked
    rows of ``data.path`` and ``data.eval_path``, rendered here with the model's tokenizer); on resume,
    restore the policy's optimizer, schedule and RNGs from the latest checkpoint."""
    t, out = config.train, Path(config.output.dir)
    device, algo = resolve_device(t.device), config.algorithm.resolve()
    set_cpu_threads(t.cpu_threads)
    random.seed(t.seed), np.random.seed(t.seed), torch.manual_seed(t.seed + distributed.rank())
    excluded = {prompt_key(e.unwrapped.prompt_of(e.unwrapped.tasks[i]))
                for e in eval_envs for i in range(min(config.output.eval_tasks, len(e.unwrapped.tasks)))}
    reward_models = [[ModelReward(rm.model, rm.weight, rm.name, config.model.dtype, device, t.micro_batch_size)
                      for rm in spec.reward_models] for spec in config.envs]
    sampler = TaskSampler(envs, [e.weight for e in config.envs], t.seed, excluded, reward_models)
    base_path = resolve_model(config.model.path, log) if distributed.is_main() else None
    base_path = distributed.gather(base_path)[0]  # rank 0 builds the tiny model once
    latest = ckpt.latest_checkpoint(out) if resume else None
    model, tokenizer = load_policy(config.model, base_path, latest, device)
    # A value head on the policy's trunk goes on before the policy is wrapped and its optimizer made.
    if algo.uses_critic and config.critic.shared_trunk:
        attach_shared_head(model, saved_shared_head(latest), config.model.dtype, t.seed, device)
    if algo.objective == "reward_model":
        attach_shared_head(model, saved_head(latest), config.model.dtype, t.seed, device)
    reference = load_reference(config.model, base_path, model, device) if algo.uses_reference else None
    for dataset in data:
        if dataset is not None:
            dataset.render(tokenizer)
    # Before wrapping: the vllm engine loads the whole weights, which FSDP is about to shard.
    def make(weights):
        return make_engine(config.sampling.engine, weights, tokenizer, config.sampling, t.seed + distributed.rank())

    # Off-policy rollouts are sampled while the policy trains: from weights of the engine's own.
    engine = SnapshotEngine(model, make) if t.off_policy_steps and config.sampling.engine != "vllm" else make(model)
    module = distributed.wrap(model, device, t.strategy)
    if config.sampling.tis_cap and not engine.reports_logprobs:
        raise ConfigError(f"sampling.tis_cap needs an engine that reports its log-probs; sampling.engine "
                          f"{config.sampling.engine} runs {type(engine).__name__} for this model")
    log(f"rollout engine: {type(engine).__name__} (sampling.engine {config.sampling.engine})")
    optimizer = make_optimizer(model, t.lr, t.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t.warmup_steps, t.steps,
                                                                                 t.lr_schedule))
    return Run(config, algo, device, base_path, latest, sampler, eval_envs, *data, t.score_workers or None,
               Policy(model, tokenizer, engine, reference), module, optimizer, scheduler,
               torch.Generator().manual_seed(t.seed + distributed.rank()))


def resume_state(run: Run) -> tuple[int, dict | None]:
    """(step, held-out accuracy before training) of the checkpoint ``run`` resumes
    from, whose policy optimizer, schedule and RNGs it restores."""
    state = ckpt.load_trainer_state(run.checkpoint)
    if len(state["rng"]) != distributed.world():
        raise ckpt.CheckpointError(f"{run.checkpoint} was written by {len(state['rng'])} processes; resume with as many")
    ckpt.load_optimizer_state(run.policy.model, run.optimizer, state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.shuffle_rng.set_state(state["shuffle_rng"][distributed.rank()])
    ckpt.set_rng_state(state["rng"][distributed.rank()])
    return state["step"], state["before"]


def save(run: Run, objective: Objective, step: int, before: dict | None) -> None:
    """A checkpoint of the policy, its optimizer and schedule, every rank's RNGs and
    the objective's state. All ranks call it; rank 0 writes."""
    weights, optimizer_state = ckpt.gather_state(run.policy.model, run.optimizer)
    extra, write_more = objective.checkpoint(weights)
    weights = split_shared_head(run.policy.model, weights)[0]  # PPO's shared value head is saved by the objective
    rngs, shuffles = distributed.gather(ckpt.rng_state()), distributed.gather(run.shuffle_rng.get_state())
    if distributed.is_main():
        ckpt.save_checkpoint(Path(run.config.output.dir), run.policy.model, run.policy.tokenizer, {
            "step": step, "optimizer": optimizer_state, "scheduler": run.scheduler.state_dict(), **extra,
            "shuffle_rng": shuffles, "rng": rngs, "before": before}, weights, write_more=write_more)
    distributed.barrier()


def train(config: Config, resume: bool = False, log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the run summary. Under
    torchrun, every rank runs this; rank 0 alone evaluates, logs and checkpoints."""
    t, out = config.train, Path(config.output.dir)
    distributed.init(resolve_device(t.device))
    main = distributed.is_main()
    check_processes(config, distributed.world())
    check_engine(config)
    # Bad input (model path, env options, dataset rows) fails before the run directory exists.
    for path in [config.model.path, *model_paths(config)]:
        check_model(path)
    envs, eval_envs = make_envs(config, held_out=False), make_envs(config, held_out=True)
    data = load_data(config)
    extraction = [getattr(env.unwrapped, "answer_extraction", None) for env in envs]  # recorded in the summary
    if main:
        warn_if_sandbox_weakened(envs, log)
        if any(extraction):
            log("answer extraction: " + ", ".join(f"{s.id} {m}" for s, m in zip(config.envs, extraction) if m))
        ckpt.prepare_run_dir(out, dataclasses.asdict(config), resume)
    distributed.barrier()
    run = setup_run(config, envs, eval_envs, data, resume, log)
    objective = OBJECTIVES[run.algo.objective](run)
    if run.checkpoint:
        step, before = resume_state(run)
        log(f"resumed {out} at step {step}")
    else:
        step, before = 0, None
        # Every rank evaluates, rank 0 reports: had rank 0 run the layers alone, FSDP2's record of the
        # forward order (its backward prefetch) would differ between ranks, and an objective whose
        # first update follows no sampling (SFT) would hang in its first backward.
        with distributed.full_params(run.module):
            before = objective.evaluate(progress and main)
            if main:
                log(f"held-out accuracy before training: {_fmt(before)}")
    distributed.barrier()
    from thinkgym.trainer.logging import RunLogger
    logger = RunLogger(out, config.output, total=t.steps, start=step, progress=progress) if main else None
    while step < t.steps:
        started = time.perf_counter()
        batch, stats = objective.step(step)
        step += 1
        stats.update(sync_engine(run))
        metrics = step_metrics(batch, stats, run, time.perf_counter() - started)
        if main:
            logger.log(step, {"step": step, **metrics}, batch.samples)
        if step % config.output.checkpoint_every == 0 or step == t.steps:
            save(run, objective, step, before)
    sync_engine(run, stepped=False)  # the held-out accuracy of the policy, not of an engine that lags (sync_every)
    with distributed.full_params(run.module):
        after = objective.evaluate(progress and main)
    if isinstance(run.policy.engine, VLLMEngine):
        run.policy.engine.close()
    processes = distributed.world()
    distributed.close()
    if not main:
        return {"steps": step}
    logger.close()
    summary = {"steps": step, "processes": processes, "answer_extraction": extraction, "before": before, "after": after,
               "checkpoint": str(out / "checkpoint"), "metrics": str(out / "metrics.jsonl"), "plot": str(logger.plot())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"held-out accuracy: before {_fmt(before)} -> after {_fmt(after)}")
    log(f"checkpoint: {summary['checkpoint']}\nmetrics: {summary['metrics']}\nplot: {summary['plot']}")
    return summary


def sync_engine(run: Run, stepped: bool = True) -> dict[str, float]:
    """After an optimizer step (``stepped``): an engine with weights of its own (vllm,
    or the off-policy copy) loads the policy's when it says so (``sampling.vllm.sync_every``),
    once the rollouts it is sampling (off-policy) are done; every rank its own engine,
    from whole weights under FSDP. Without ``stepped`` (before the held-out
    evaluation), whenever it lags. An engine made on resume starts from the checkpoint's weights."""
    engine = run.policy.engine
    if not holds_own_weights(engine):
        return {}
    # Wait first: the sampling in flight reads the engine's lag and draws from the RNG a checkpoint saves.
    started = time.perf_counter()
    run.in_flight.wait()
    waited = {"time/rollout_wait": time.perf_counter() - started}
    if not (engine.policy_stepped() if stepped else engine.lag):
        return waited
    started = time.perf_counter()
    with distributed.full_params(run.module):
        engine.load_weights(run.policy.model)
    return {**waited, "time/weight_sync": time.perf_counter() - started}


def step_metrics(batch: Batch, stats: dict[str, float], run: Run, step_time: float) -> dict[str, float]:
    """A step's metrics, averaged over the ranks (throughputs and counts summed)."""
    train_tokens = int(batch.loss_mask.sum()) * run.config.train.epochs_per_batch
    metrics = distributed.mean_metrics({**batch.metrics, **stats, "lr": run.scheduler.get_last_lr()[0],
                                        "time/step": step_time,
                                        "train_tokens_per_s": train_tokens / max(stats["time/update"], 1e-9)})
    for key in ("rollout_tokens_per_s", "train_tokens_per_s", "tokens/computed", "tokens/full_width",
                "score/infra_errors"):
        if key in metrics:  # no policy update (tokens/*) while PPO's critic warms up
            metrics[key] *= distributed.world()  # throughput and counts add up over ranks
    return metrics


def _fmt(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items())
