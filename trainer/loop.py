"""The GRPO-family training loop, top to bottom.

One step: draw B prompts from the environment mixture, sample G completions
each, score them in worker processes, compute group advantages (dropping
all-equal groups under dynamic sampling), then run ``epochs_per_batch`` passes of
clipped-surrogate updates over mini-batches with gradient accumulation.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


import thinkgym
from thinkgym.rewards.format import overlong_penalty
from thinkgym.trainer import checkpoint as ckpt
from thinkgym.trainer import distributed, ppo
from thinkgym.trainer.accumulate import accumulate_and_step
from thinkgym.trainer.algorithms import LOSSES, AlgorithmConfig, aggregate, group_advantages, informative_groups, kl_penalty
from thinkgym.trainer.batching import per_token
from thinkgym.trainer.config import Config
from thinkgym.trainer.evaluate import render_prompts, sample_and_score
from thinkgym.trainer.plan import check_processes
from thinkgym.trainer.rollout import RolloutEngine, make_engine
from thinkgym.trainer.typed_config import ConfigError
from thinkgym.trainer.policy import Rollouts, load_model, token_logprobs
from thinkgym.trainer.models import check_model, resolve_model
from thinkgym.trainer.sampling import Sampling


_SCORER = ThreadPoolExecutor(1, thread_name_prefix="thinkgym-score")  # waits on the scoring processes


def _timed(fn, *args):
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


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
        envs.append(thinkgym.make(spec.id, think_format=spec.think_format, **kwargs))
    return envs


class TaskSampler:
    """Draws training tasks from the weighted env mixture. Step ``s`` draws from an
    RNG seeded by ``(seed, s, round)``, so the data order of a resumed run is the
    one it would have had. Held-out tasks (same prompt) are never drawn."""

    def __init__(self, envs, weights: list[float], seed: int, excluded_prompts: set[str]):
        self.envs, self.seed, self.excluded = envs, seed, excluded_prompts
        self.weights = np.asarray(weights, dtype=float) / sum(weights)

    def draw(self, step: int, round_: int, count: int) -> list[tuple[int, dict]]:
        rng = np.random.default_rng([self.seed, step, round_, distributed.rank()])  # each rank its own prompts
        drawn = []
        while len(drawn) < count:
            e = int(rng.choice(len(self.envs), p=self.weights))
            env = self.envs[e].unwrapped
            task = env.tasks[int(rng.integers(len(env.tasks)))]
            if _prompt_key(env.prompt_of(task)) not in self.excluded:
                drawn.append((e, task))
        return drawn


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def load_policy(config: Config, base_path: str, checkpoint: Path | None, device: str, with_reference: bool):
    """(policy, tokenizer, reference or None). With LoRA the reference is the
    policy itself with its adapters disabled, so no second copy is loaded."""
    m = config.model
    if m.lora_rank:
        from peft import LoraConfig, PeftModel, get_peft_model
        model, tokenizer = load_model(base_path, m.dtype, device)
        if checkpoint:
            model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
        else:
            model = get_peft_model(model, LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=0.0,
                                                     target_modules=m.lora_targets, task_type="CAUSAL_LM"))
        reference = AdapterFree(model) if with_reference else None
    else:
        model, tokenizer = load_model(str(checkpoint) if checkpoint else base_path, m.dtype, device)
        reference = load_model(base_path, m.dtype, device)[0].eval() if with_reference else None
    if m.gradient_checkpointing:  # renamed in transformers 5
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    return model, tokenizer, reference


class AdapterFree:
    """A peft model seen with its adapters disabled: the LoRA run's reference.
    Only what :func:`token_logprobs` uses: the decoder and the LM head."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def eval(self):
        return self

    def get_decoder(self):
        decoder = self.peft_model.get_decoder()

        def run(**kwargs):
            with self.peft_model.disable_adapter():
                return decoder(**kwargs)
        return run

    def get_output_embeddings(self):
        return self.peft_model.get_output_embeddings()


def held_out_accuracy(model, engine: RolloutEngine, eval_envs, tasks_per_env: int, sampling: Sampling,
                      workers, progress: bool = True) -> dict[str, float]:
    """Accuracy (:meth:`TextEnv.is_correct`) of one sample per held-out task, sampled with ``engine``."""
    model.eval()
    result = {}
    for env in eval_envs:
        base = env.unwrapped
        name = base.spec.id if base.spec else "env"
        tasks = [base.tasks[i] for i in range(min(tasks_per_env, len(base.tasks)))]
        samples = sample_and_score(engine, env, tasks, 1, sampling, workers=workers, desc=f"held-out {name}",
                                   progress=progress)
        result[name] = sum(samples.correct(base)) / len(tasks)
    return result


def warn_if_sandbox_weakened(envs, log) -> None:
    """Say so when the envs run code in a sandbox weaker than this machine allows."""
    from thinkgym.rewards import code_reward
    from thinkgym.rewards.sandbox import isolation_warning

    if any(r.fn is code_reward for env in envs for r in env.unwrapped.rewards):
        warning = isolation_warning()
        if warning:
            log(f"WARNING: {warning}")


@dataclasses.dataclass
class Batch:
    """One step's training data: G completions for each kept prompt."""

    rollouts: Rollouts
    rewards: torch.Tensor
    advantages: torch.Tensor | None  # [N] per completion, or [N, T] per token (PPO)
    loss_mask: torch.Tensor
    metrics: dict[str, float]
    samples: list[dict]
    values: torch.Tensor | None = None  # PPO: [N, T] the critic's values when sampled
    returns: torch.Tensor | None = None  # PPO: [N, T] GAE returns, the critic's targets


def collect_batch(step: int, config: Config, algo: AlgorithmConfig, model, tokenizer, envs, sampler: TaskSampler,
                  workers, ref_model=None, engine=None) -> Batch:
    """Generate and score until B informative groups are in hand (dynamic
    sampling) or the extra rounds run out. While the rewards are scored (in
    worker processes), the old-policy and reference log-probs of the same
    completions are computed, so scoring costs little wall time."""
    t, sampling_cfg = config.train, config.sampling
    engine = engine or make_engine(sampling_cfg.engine, model, tokenizer)
    sampling = Sampling(sampling_cfg.temperature, sampling_cfg.top_p, sampling_cfg.max_new_tokens, tuple(sampling_cfg.stop))
    g, wanted = t.group_size, t.prompts_per_step // distributed.world()
    kept: list[tuple[Rollouts, torch.Tensor, list]] = []
    have, rounds, seen_groups, flat_groups = 0, 0, 0, 0
    stats: dict[str, list] = {"reward": [], "length": [], "truncated": []}
    components: dict[str, list[float]] = {}
    accuracy: dict[str, list[float]] = {}
    samples = []
    gen_time = score_time = score_wait = logprob_time = 0.0
    infra_errors = 0
    micro, temperature = t.micro_batch_size, sampling.temperature
    # With one optimizer step per batch the policy is still the sampling policy when
    # the loss is computed: its own detached log-probs are the old ones (ratio 1).
    # PPO's per-token KL reward needs them too.
    needs_old = t.epochs_per_batch > 1 or t.mini_batch_size < t.prompts_per_step * g or algo.uses_critic
    while have < wanted and rounds <= (config.algorithm.max_resample_rounds if algo.dynamic_sampling else 0):
        drawn = sampler.draw(step, rounds, wanted - have if rounds else wanted)
        rounds += 1
        for e, env in enumerate(envs):
            tasks = [task for i, task in drawn if i == e]
            if not tasks:
                continue
            base = env.unwrapped
            prompts, chat = render_prompts(base, tokenizer, tasks)
            start = time.perf_counter()
            model.eval()
            rollouts = engine.generate(prompts, g, sampling, add_special_tokens=not chat)
            gen_time += time.perf_counter() - start
            scoring = _SCORER.submit(_timed, base.score_many, rollouts.texts, [task for task in tasks for _ in range(g)],
                                     workers)
            start = time.perf_counter()
            if needs_old:
                rollouts.old_logprobs = batch_logprobs(model, rollouts, micro, temperature, t.bucket_by_length)
            if ref_model is not None:
                rollouts.ref_logprobs = batch_logprobs(ref_model, rollouts, micro, temperature, t.bucket_by_length)
            logprob_time += time.perf_counter() - start
            start = time.perf_counter()
            scored, seconds = scoring.result()
            score_wait += time.perf_counter() - start
            score_time += seconds
            rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
            # A sandbox that failed (not the program) says nothing of the completion:
            # its group is dropped, and it counts in no reward statistic.
            judged = torch.tensor([not s.infra_error for s in scored])
            infra_errors += int((~judged).sum())
            lengths = rollouts.completion_mask.sum(1)
            if algo.overlong == "soft_penalty":
                buffer = max(1, round(algo.overlong_buffer * sampling.max_new_tokens))
                rewards += torch.tensor([float(overlong_penalty(int(n), sampling.max_new_tokens, buffer)) for n in lengths])
            for s in (s for s in scored if not s.infra_error):
                for name, value in s.rewards.items():
                    components.setdefault(name, []).append(value)
            name = base.spec.id if base.spec else f"env{e}"
            accuracy.setdefault(name, []).extend(float(base.is_correct(s.rewards)) for s in scored if not s.infra_error)
            stats["reward"].append(rewards[judged])
            stats["length"].append(lengths.float())
            stats["truncated"].append(rollouts.truncated.float())
            samples += [{"env": name, "task_id": task["id"], "completion": text, "reward": s.reward, "reasons": s.reasons}
                        for task, text, s in zip([x for x in tasks for _ in range(g)], rollouts.texts, scored)]
            informative = informative_groups(rewards, g)
            seen_groups += len(tasks)
            flat_groups += int((~informative).sum())
            keep = informative if algo.dynamic_sampling else torch.ones_like(informative)
            keep = (keep & judged.view(-1, g).all(1)).repeat_interleave(g)
            if keep.any():
                kept.append((_select(rollouts, keep), rewards[keep], tasks))
                have += int(keep.sum()) // g
    # Dynamic sampling may overshoot (trim to B groups) or fall short, and sandbox
    # failures drop groups; all ranks train on the same number of groups, so their
    # optimizer steps line up, and all stop together when one has none.
    n_keep = min(distributed.gather(min(have, wanted))) * g
    if n_keep == 0:
        raise RuntimeError(f"step {step}: a process had only groups with equal rewards or a sandbox failure "
                           f"({infra_errors} completions here) in {rounds} rounds; nothing to learn from")
    rollouts = _concat([k[0] for k in kept], tokenizer.pad_token_id)
    rollouts = _select(rollouts, torch.arange(rollouts.completion_ids.shape[0]) < n_keep)
    rewards = torch.cat([k[1] for k in kept])[:n_keep]
    advantages = None if algo.uses_critic else group_advantages(rewards, g, algo.estimator)  # PPO: ppo.advantages
    loss_mask = rollouts.completion_mask.clone()
    if algo.overlong == "mask_truncated":
        loss_mask[rollouts.truncated] = 0
    all_rewards = torch.cat(stats["reward"])
    metrics = {"reward/mean": all_rewards.mean().item(), "reward/std": all_rewards.std().item(),
               "length/mean": torch.cat(stats["length"]).mean().item(), "length/max": torch.cat(stats["length"]).max().item(),
               "truncated_frac": torch.cat(stats["truncated"]).mean().item(),
               "zero_variance_groups_frac": flat_groups / max(seen_groups, 1), "sampling_rounds": rounds,
               "time/generate": gen_time, "time/logprobs": logprob_time, "time/score": score_time,
               "time/score_wait": score_wait, "score/infra_errors": infra_errors,
               "rollout_tokens_per_s": torch.cat(stats["length"]).sum().item() / max(gen_time, 1e-9)}
    metrics.update({f"reward/{k}": sum(v) / len(v) for k, v in components.items()})
    metrics.update({f"accuracy/{k}": sum(v) / len(v) for k, v in accuracy.items() if v})  # v empty: all failed
    return Batch(rollouts, rewards, advantages, loss_mask, metrics, samples)


def _select(r: Rollouts, keep: torch.Tensor) -> Rollouts:
    def pick(x):
        return None if x is None else x[keep]
    return Rollouts(r.prompt_ids[keep], r.prompt_mask[keep], r.completion_ids[keep], r.completion_mask[keep],
                    [x for x, k in zip(r.texts, keep.tolist()) if k], r.truncated[keep],
                    pick(r.old_logprobs), pick(r.ref_logprobs), pick(r.rollout_logprobs))


def _concat(parts: list[Rollouts], pad_id: int) -> Rollouts:
    """Stack rollouts of different widths: prompts left-padded, completions right-padded."""
    p = max(r.prompt_ids.shape[1] for r in parts)
    c = max(r.completion_ids.shape[1] for r in parts)

    def stack(name, width, value, left):
        tensors = [getattr(r, name) for r in parts]
        if tensors[0] is None:
            return None
        return torch.cat([torch.nn.functional.pad(x, (width - x.shape[1], 0) if left else (0, width - x.shape[1]),
                                                  value=value) for x in tensors])

    return Rollouts(stack("prompt_ids", p, pad_id, True), stack("prompt_mask", p, 0, True),
                    stack("completion_ids", c, pad_id, False), stack("completion_mask", c, 0, False),
                    [x for r in parts for x in r.texts], torch.cat([r.truncated for r in parts]),
                    stack("old_logprobs", c, 0.0, False), stack("ref_logprobs", c, 0.0, False),
                    stack("rollout_logprobs", c, 0.0, False))


def batch_logprobs(model, r: Rollouts, micro: int, temperature: float, bucket: bool = True) -> torch.Tensor:
    """[N, T] log-probs of ``r``'s completion tokens (0 on padding), in ``r``'s row
    order, computed ``micro`` rows at a time (bucketed by length and trimmed with ``bucket``)."""
    model.eval()
    return per_token(r, micro, bucket, lambda inputs: token_logprobs(model, *inputs, temperature)[0])


def update(module, optimizer, scheduler, batch: Batch, config: Config, algo: AlgorithmConfig,
           rng: torch.Generator) -> dict[str, float]:
    """The policy's update: :func:`accumulate_and_step` over the batch with the
    registered policy loss (``algorithm.loss``) and, when ``beta`` puts it in the
    loss, the KL to the reference; then one scheduler step. ``module`` is
    :func:`distributed.wrap` of the policy (``tokens/*`` metrics count the decoder work)."""
    t = config.train
    old_logprobs, ref_logprobs = batch.rollouts.old_logprobs, batch.rollouts.ref_logprobs
    rollout_logprobs = batch.rollouts.rollout_logprobs  # set when the engine reports them
    gaps: list[torch.Tensor] = []
    norm_length = float(config.sampling.max_new_tokens)
    loss_of = LOSSES[algo.loss]

    def loss_fn(mb, mask):
        logprobs, entropy = module(*mb.inputs, config.sampling.temperature, True)
        old = logprobs.detach() if old_logprobs is None else mb.take(old_logprobs)
        advantages = mb.take(batch.advantages)
        if rollout_logprobs is not None:  # the engine's numerics vs the trainer's, and their correction
            drift = old - mb.take(rollout_logprobs)
            gaps.append(drift.abs()[mb.take(batch.rollouts.completion_mask).bool()])
            if config.sampling.tis_cap:  # per token: the surrogate scales linearly in A
                advantages = (advantages if advantages.dim() > 1 else advantages[:, None]) * \
                    drift.exp().clamp(max=config.sampling.tis_cap)
        loss, stats = loss_of(logprobs, old, advantages, mask, clip_low=algo.clip_low, clip_high=algo.clip_high,
                              dual_clip=algo.dual_clip, agg=algo.agg, norm_length=norm_length,
                              ratio_level=algo.ratio_level)
        if algo.beta > 0 and not algo.uses_critic:
            kl = aggregate(kl_penalty(logprobs, mb.take(ref_logprobs), algo.kl), mask, algo.agg, norm_length)
            loss = loss + algo.beta * kl
            stats["kl_ref"] = kl.detach()
        stats["entropy"] = (entropy * mask).sum() / mask.sum().clamp(min=1)
        return loss, stats

    stats = accumulate_and_step(module, optimizer, batch.rollouts, batch.loss_mask, loss_fn, agg=algo.agg,
                                epochs=t.epochs_per_batch, mini_batch_size=t.mini_batch_size,
                                micro_batch_size=t.micro_batch_size, bucket=t.bucket_by_length,
                                max_grad_norm=t.max_grad_norm, rng=rng)
    scheduler.step()
    # Decoder token positions this step (all epochs) vs the same micro-batches at full width.
    stats["tokens/padding_saved_frac"] = 1 - stats["tokens/computed"] / stats["tokens/full_width"]
    if gaps:
        gap = torch.cat(gaps)
        stats.update({"rollout_logprob_gap/mean": gap.mean().item(), "rollout_logprob_gap/max": gap.max().item()})
    return stats


def make_optimizer(model, config: Config, device: str) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with torch's fused kernel on CPU and
    CUDA: one pass over each parameter instead of a dozen (about 9x faster for a
    43M-parameter model on one CPU core)."""
    t = config.train
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay,
                             fused=torch.device(device).type in ("cpu", "cuda"))


def train(config: Config, resume: bool = False, log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the run summary. Under
    torchrun, every rank runs this; rank 0 alone evaluates, logs and checkpoints."""
    t, out = config.train, Path(config.output.dir)
    device = resolve_device(t.device)
    distributed.init(device)
    main = distributed.is_main()
    algo = config.algorithm.resolve()
    check_processes(config, distributed.world())
    # Bad input (model path, env options, dataset rows) fails before the run directory exists.
    check_model(config.model.path)
    if config.critic.path and algo.uses_critic:
        check_model(config.critic.path)
    envs, eval_envs = make_envs(config, held_out=False), make_envs(config, held_out=True)
    extraction = [getattr(env.unwrapped, "answer_extraction", None) for env in envs]  # recorded in the summary
    if main:
        warn_if_sandbox_weakened(envs, log)
        if any(extraction):
            log("answer extraction: " + ", ".join(f"{s.id} {m}" for s, m in zip(config.envs, extraction) if m))
        ckpt.prepare_run_dir(out, dataclasses.asdict(config), resume)
    distributed.barrier()
    set_cpu_threads(t.cpu_threads)
    random.seed(t.seed), np.random.seed(t.seed), torch.manual_seed(t.seed + distributed.rank())
    workers = t.score_workers or None
    excluded = {_prompt_key(e.unwrapped.prompt_of(e.unwrapped.tasks[i]))
                for e in eval_envs for i in range(min(config.output.eval_tasks, len(e.unwrapped.tasks)))}
    sampler = TaskSampler(envs, [e.weight for e in config.envs], t.seed, excluded)
    base_path = resolve_model(config.model.path, log) if main else None
    base_path = distributed.gather(base_path)[0]  # rank 0 builds the tiny model once
    latest = ckpt.latest_checkpoint(out) if resume else None
    model, tokenizer, ref_model = load_policy(config, base_path, latest, device, with_reference=algo.beta > 0)
    module = distributed.wrap(model, device, t.strategy)
    engine = make_engine(config.sampling.engine, model, tokenizer)
    if config.sampling.tis_cap and not engine.reports_logprobs:
        raise ConfigError(f"sampling.tis_cap needs an engine that reports its log-probs; sampling.engine "
                          f"{config.sampling.engine} runs {type(engine).__name__} for this model")
    log(f"rollout engine: {type(engine).__name__} (sampling.engine {config.sampling.engine})")
    critic = ppo.setup_critic(config, base_path, latest, device) if algo.uses_critic else None
    optimizer = make_optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (t.warmup_steps + 1)))
    shuffle_rng = torch.Generator().manual_seed(t.seed + distributed.rank())
    eval_sampling = Sampling(config.sampling.temperature, config.sampling.top_p, config.sampling.max_new_tokens,
                             tuple(config.sampling.stop))
    step, before = 0, None
    if latest:
        state = ckpt.load_trainer_state(latest)
        if len(state["rng"]) != distributed.world():
            raise ckpt.CheckpointError(f"{latest} was written by {len(state['rng'])} processes; resume with as many")
        ckpt.load_optimizer_state(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle_rng.set_state(state["shuffle_rng"][distributed.rank()])
        ckpt.set_rng_state(state["rng"][distributed.rank()])
        step, before = state["step"], state["before"]
        log(f"resumed {out} at step {step}")
    else:
        with distributed.full_params(module):  # under FSDP every rank gathers the weights rank 0 evaluates
            if main:
                before = held_out_accuracy(model, engine, eval_envs, config.output.eval_tasks, eval_sampling,
                                           workers, progress)
                log(f"held-out accuracy before training: {_fmt(before)}")
    distributed.barrier()
    from thinkgym.trainer.logging import RunLogger
    logger = RunLogger(out, config.output, total=t.steps, start=step, progress=progress) if main else None
    while step < t.steps:
        started = time.perf_counter()
        with distributed.full_params(module):  # FSDP: sample from whole weights, without collectives
            batch = collect_batch(step, config, algo, model, tokenizer, envs, sampler, workers, ref_model, engine)
        mark = time.perf_counter()
        stats = {}
        if critic:
            stats.update(ppo.advantages(critic, batch, config, algo))
            stats.update(ppo.update_critic(critic, batch, config, algo, shuffle_rng))
        if critic is None or step >= config.critic.warmup_steps:
            stats.update(update(module, optimizer, scheduler, batch, config, algo, shuffle_rng))
        update_time = time.perf_counter() - mark
        step += 1
        train_tokens = int(batch.loss_mask.sum()) * t.epochs_per_batch
        metrics = distributed.mean_metrics({**batch.metrics, **stats, "lr": scheduler.get_last_lr()[0],
                                            "time/update": update_time, "time/step": time.perf_counter() - started,
                                            "train_tokens_per_s": train_tokens / max(update_time, 1e-9)})
        for key in ("rollout_tokens_per_s", "train_tokens_per_s", "tokens/computed", "tokens/full_width",
                    "score/infra_errors"):
            if key in metrics:  # no policy update (tokens/*) while PPO's critic warms up
                metrics[key] *= distributed.world()  # throughput and counts add up over ranks
        if main:
            logger.log(step, {"step": step, **metrics}, batch.samples)
        if step % config.output.checkpoint_every == 0 or step == t.steps:
            weights, optimizer_state = ckpt.gather_state(model, optimizer)
            critic_weights, critic_optimizer = ckpt.gather_state(critic.critic, critic.optimizer) if critic else (None, None)
            rngs, shuffles = distributed.gather(ckpt.rng_state()), distributed.gather(shuffle_rng.get_state())
            if main:
                ckpt.save_checkpoint(out, model, tokenizer, {
                    "step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                    "critic_optimizer": critic_optimizer, "shuffle_rng": shuffles, "rng": rngs, "before": before},
                    weights, write_more=(lambda folder: ppo.save_critic(critic, critic_weights, folder)) if critic else None)
            distributed.barrier()
    with distributed.full_params(module):
        after = held_out_accuracy(model, engine, eval_envs, config.output.eval_tasks, eval_sampling,
                                  workers, progress) if main else None
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


def _fmt(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items())
