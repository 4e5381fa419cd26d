"""A step's training data, as every RL objective collects it: draw prompts from
the environment mixture, sample G completions each with the rollout engine,
score them in worker processes, keep the groups worth training on.

While the rewards are scored, the old-policy and reference log-probs of the
same completions are computed, so scoring costs little wall time. Advantages
are the objective's business (``grpo.py``, ``ppo.py``), not this module's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np
import torch

from thinkgym.rewards.format import overlong_penalty
from thinkgym.trainer import distributed
from thinkgym.trainer.batching import per_token
from thinkgym.trainer.config import Config
from thinkgym.trainer.engines import holds_own_weights
from thinkgym.trainer.engines.rollouts import Rollouts, concat, select
from thinkgym.trainer.evaluation.samples import render_prompts
from thinkgym.trainer.losses import informative_groups
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.models.policy import Policy

_SCORER = ThreadPoolExecutor(1, thread_name_prefix="thinkgym-score")  # waits on the scoring processes


class TaskSampler:
    """Draws training tasks from the weighted env mixture. Step ``s`` draws from an
    RNG seeded by ``(seed, s, round)``, so the data order of a resumed run is the
    one it would have had. Held-out tasks (same prompt) are never drawn.
    ``reward_models[e]``: the learnt reward components of env ``e``
    (:class:`~thinkgym.trainer.reward_model.ModelReward`), scored on the trainer's
    device after the env's own rewards."""

    def __init__(self, envs, weights: list[float], seed: int, excluded_prompts: set[str],
                 reward_models: list[list] | None = None):
        self.envs, self.seed, self.excluded = envs, seed, excluded_prompts
        self.reward_models = reward_models or [[] for _ in envs]
        self.weights = np.asarray(weights, dtype=float) / sum(weights)

    def draw(self, step: int, round_: int, count: int) -> list[tuple[int, dict]]:
        rng = np.random.default_rng([self.seed, step, round_, distributed.rank()])  # each rank its own prompts
        drawn = []
        while len(drawn) < count:
            e = int(rng.choice(len(self.envs), p=self.weights))
            env = self.envs[e].unwrapped
            task = env.tasks[int(rng.integers(len(env.tasks)))]
            if prompt_key(env.prompt_of(task)) not in self.excluded:
                drawn.append((e, task))
        return drawn


def prompt_key(prompt) -> str:
    """A hashable key of a prompt (a string, or chat messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


@dataclasses.dataclass
class Batch:
    """One step's training data: G completions for each kept prompt."""

    rollouts: Rollouts
    rewards: torch.Tensor
    loss_mask: torch.Tensor
    metrics: dict[str, float]
    samples: list[dict]
    advantages: torch.Tensor | None = None  # set by the objective: [N] per completion, or [N, T] per token (PPO)
    values: torch.Tensor | None = None  # PPO: [N, T] the critic's values when sampled
    returns: torch.Tensor | None = None  # PPO: [N, T] GAE returns, the critic's targets


def collect_batch(step: int, config: Config, policy: Policy, sampler: TaskSampler, workers) -> Batch:
    """Generate and score until B informative groups are in hand (dynamic
    sampling) or the extra rounds run out; every rank returns as many groups.
    The trainer's log-probs are computed while the rewards are scored."""
    return assemble_batch(sample_groups(step, config, policy, sampler, workers), config, policy)


@dataclasses.dataclass
class Groups:
    """What :func:`sample_groups` kept (not yet trimmed to what every rank has)."""

    step: int
    kept: list[tuple[Rollouts, torch.Tensor]]  # (rollouts, rewards) per env and round
    have: int  # groups kept
    rounds: int
    tally: _Tally
    trainer_logprobs: bool  # whether the rollouts' old and reference log-probs are filled


class InFlight:
    """At most one :func:`sample_groups` call running in a thread of its own
    (``train.off_policy_steps``: step s+1's groups while step s trains)."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="thinkgym-rollout")
        self._step: int | None = None
        self._future: Future | None = None

    def start(self, step: int, config: Config, policy: Policy, sampler: TaskSampler, workers) -> None:
        """Sample ``step``'s groups, without the trainer's log-probs (the policy is training meanwhile)."""
        # A new thread starts with torch's default threads, not train.cpu_threads, and on cuda:0, not this rank's GPU.
        threads = torch.get_num_threads()
        gpu = torch.cuda.current_device() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        self._step = step
        self._future = self._pool.submit(_in_thread, threads, gpu, sample_groups, step, config, policy, sampler,
                                         workers, False)

    def wait(self) -> None:
        """Until the groups in flight (if any) are sampled: the engine is free."""
        if self._future is not None:
            wait([self._future])

    def take(self, step: int) -> Groups | None:
        """``step``'s groups if they were started (waiting for them), else None.
        Raises what the sampling raised."""
        if self._step != step:
            return None
        future, self._step, self._future = self._future, None, None
        return future.result()


def _in_thread(threads: int, gpu: int | None, fn, *args):
    torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    return fn(*args)


def needs_old_logprobs(config: Config) -> bool:
    """Whether the update needs the sampling policy's log-probs computed before it starts.
    With one optimizer step per batch the policy is still the sampling policy when the
    loss is computed: its own detached log-probs are the old ones (ratio 1). PPO's
    per-token KL reward needs them too. The other objectives have no ratio."""
    t, algo = config.train, config.algorithm.resolve()
    return algo.objective in ("grpo", "ppo") and (
        t.epochs_per_batch > 1 or t.mini_batch_size < t.prompts_per_step * t.group_size or algo.uses_critic)


def sample_groups(step: int, config: Config, policy: Policy, sampler: TaskSampler, workers,
                  trainer_logprobs: bool = True) -> Groups:
    """Step ``step``'s groups, sampled with ``policy.engine`` and scored. Without
    ``trainer_logprobs`` neither the policy nor its reference is touched (the
    policy may be training in another thread): :func:`assemble_batch` computes
    their log-probs instead. No collectives."""
    t, algo = config.train, config.algorithm.resolve()
    g, wanted = t.group_size, t.prompts_per_step // distributed.world()
    needs_old = trainer_logprobs and needs_old_logprobs(config)
    tally = _Tally(policy.engine.lag if holds_own_weights(policy.engine) else None)
    kept: list[tuple[Rollouts, torch.Tensor]] = []
    have, rounds = 0, 0
    while have < wanted and rounds <= (config.algorithm.max_resample_rounds if algo.informative_only else 0):
        drawn = sampler.draw(step, rounds, wanted - have if rounds else wanted)
        rounds += 1
        for e, env in enumerate(sampler.envs):
            tasks = [task for i, task in drawn if i == e]
            if not tasks:
                continue
            name = env.unwrapped.spec.id if env.unwrapped.spec else f"env{e}"
            rollouts, rewards, judged = _sample_and_score(name, env, sampler.reward_models[e], tasks, config, policy,
                                                          trainer_logprobs, needs_old, workers, tally)
            informative = informative_groups(rewards, g)
            tally.groups(len(tasks), int((~informative).sum()))
            keep = informative if algo.informative_only else torch.ones_like(informative)
            # A sandbox that failed (not the program) says nothing of its group: dropped.
            keep = (keep & judged.view(-1, g).all(1)).repeat_interleave(g)
            if keep.any():
                kept.append((select(rollouts, keep), rewards[keep]))
                have += int(keep.sum()) // g
    return Groups(step, kept, have, rounds, tally, trainer_logprobs)


def assemble_batch(groups: Groups, config: Config, policy: Policy, staleness_added: int = 0) -> Batch:
    """The batch of ``groups``, trimmed to as many groups as every rank has, with
    the trainer's log-probs where :func:`sample_groups` left them out. All ranks
    call it. ``staleness_added``: optimizer steps taken since the groups were sampled."""
    t, algo = config.train, config.algorithm.resolve()
    g, wanted = t.group_size, t.prompts_per_step // distributed.world()
    # Dynamic sampling may overshoot (trim to B groups) or fall short, and sandbox
    # failures drop groups; all ranks train on the same number of groups, so their
    # optimizer steps line up, and all stop together when one has none.
    n_keep = min(distributed.gather(min(groups.have, wanted))) * g
    if n_keep == 0:
        raise RuntimeError(f"step {groups.step}: a process had only groups with equal rewards or a sandbox failure "
                           f"({groups.tally.infra_errors} completions here) in {groups.rounds} rounds; "
                           f"nothing to learn from")
    rollouts = concat([k[0] for k in groups.kept], policy.tokenizer.pad_token_id)
    rollouts = select(rollouts, torch.arange(rollouts.completion_ids.shape[0]) < n_keep)
    rewards = torch.cat([k[1] for k in groups.kept])[:n_keep]
    if not groups.trainer_logprobs:
        start = time.perf_counter()
        _trainer_logprobs(rollouts, config, policy, needs_old_logprobs(config))
        groups.tally.time["logprobs"] += time.perf_counter() - start
    loss_mask = rollouts.completion_mask.clone()
    if algo.overlong == "mask_truncated":
        loss_mask[rollouts.truncated] = 0
    metrics = groups.tally.metrics(groups.rounds)
    if "rollout/staleness" in metrics:
        metrics["rollout/staleness"] += staleness_added
    return Batch(rollouts, rewards, loss_mask, metrics, groups.tally.samples)


def _trainer_logprobs(rollouts: Rollouts, config: Config, policy: Policy, needs_old: bool) -> None:
    """Fill ``rollouts``' old log-probs (when ``needs_old``) and its reference log-probs (when there is a reference)."""
    t, temperature = config.train, config.sampling.temperature
    if needs_old:
        rollouts.old_logprobs = batch_logprobs(policy.model, rollouts, t.micro_batch_size, temperature,
                                               t.bucket_by_length)
    if policy.reference is not None:
        rollouts.ref_logprobs = batch_logprobs(policy.reference, rollouts, t.micro_batch_size, temperature,
                                               t.bucket_by_length)


def _sample_and_score(name: str, env, reward_models: list, tasks: list[dict], config: Config, policy: Policy,
                      trainer_logprobs: bool, needs_old: bool, workers,
                      tally: _Tally) -> tuple[Rollouts, torch.Tensor, torch.Tensor]:
    """(rollouts, rewards, judged) of G completions for each of ``tasks``; ``judged``
    is false where the sandbox failed. With ``trainer_logprobs``, fills the rollouts'
    old and reference log-probs while the rewards are scored.
    ``reward_models`` add their weighted scores to the env's rewards."""
    t, sampling, algo = config.train, config.sampling, config.algorithm.resolve()
    g, base = t.group_size, env.unwrapped
    prompts, chat = render_prompts(base, policy.tokenizer, tasks)
    start = time.perf_counter()
    if trainer_logprobs:  # else the policy is training: the engine samples from weights of its own
        policy.model.eval()
    rollouts = policy.engine.generate(prompts, g, sampling, add_special_tokens=not chat)
    tally.time["generate"] += time.perf_counter() - start
    repeated = [task for task in tasks for _ in range(g)]
    scoring = _SCORER.submit(_timed, base.score_many, rollouts.texts, repeated, workers)
    start = time.perf_counter()
    if trainer_logprobs:
        _trainer_logprobs(rollouts, config, policy, needs_old)
    tally.time["logprobs"] += time.perf_counter() - start
    start = time.perf_counter()
    scored, seconds = scoring.result()
    tally.time["score_wait"] += time.perf_counter() - start
    tally.time["score"] += seconds
    start = time.perf_counter()
    task_prompts = [base.prompt_of(task) for task in repeated] if reward_models else []
    responses = [base.completion_prefix + text for text in rollouts.texts]  # as the env's own rewards read them
    for model in reward_models:
        for s, value in zip(scored, model.score(task_prompts, responses).tolist()):
            s.rewards[model.name] = value
            s.reward += model.weight * value
    tally.time["reward_models"] += time.perf_counter() - start
    rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
    judged = torch.tensor([not s.infra_error for s in scored])
    lengths = rollouts.completion_mask.sum(1)
    if algo.overlong == "soft_penalty":
        buffer = max(1, round(algo.overlong_buffer * sampling.max_new_tokens))
        rewards += torch.tensor([float(overlong_penalty(int(n), sampling.max_new_tokens, buffer)) for n in lengths])
    tally.completions(name, base, repeated, rollouts, scored, rewards, judged)
    return rollouts, rewards, judged


def _timed(fn, *args):
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


class _Tally:
    """A step's statistics over everything sampled, kept or not (the metrics' bookkeeping)."""

    def __init__(self, staleness: int | None):
        self.staleness = staleness  # optimizer steps the engine's weights lagged the policy's (None: it samples from the policy)
        self.rewards, self.lengths, self.truncated = [], [], []
        self.components: dict[str, list[float]] = {}
        self.accuracy: dict[str, list[float]] = {}
        self.samples: list[dict] = []
        self.time = {"generate": 0.0, "logprobs": 0.0, "score": 0.0, "score_wait": 0.0, "reward_models": 0.0}
        self.infra_errors = self.seen_groups = self.flat_groups = 0

    def completions(self, name: str, base, tasks: list[dict], rollouts: Rollouts, scored, rewards: torch.Tensor,
                    judged: torch.Tensor) -> None:
        """Completions of env ``base`` (called ``name``), ``tasks`` one per completion.
        A sandbox failure counts in no reward statistic."""
        self.infra_errors += int((~judged).sum())
        self.rewards.append(rewards[judged])
        self.lengths.append(rollouts.completion_mask.sum(1).float())
        self.truncated.append(rollouts.truncated.float())
        for s in (s for s in scored if not s.infra_error):
            for key, value in s.rewards.items():
                self.components.setdefault(key, []).append(value)
        self.accuracy.setdefault(name, []).extend(float(base.is_correct(s.rewards)) for s in scored if not s.infra_error)
        self.samples += [{"env": name, "task_id": task["id"], "completion": text, "reward": s.reward,
                          "reasons": s.reasons} for task, text, s in zip(tasks, rollouts.texts, scored)]

    def groups(self, seen: int, flat: int) -> None:
        self.seen_groups += seen
        self.flat_groups += flat

    def metrics(self, rounds: int) -> dict[str, float]:
        rewards, lengths = torch.cat(self.rewards), torch.cat(self.lengths)
        metrics = {"reward/mean": rewards.mean().item(), "reward/std": rewards.std().item(),
                   "length/mean": lengths.mean().item(), "length/max": lengths.max().item(),
                   "truncated_frac": torch.cat(self.truncated).mean().item(),
                   "zero_variance_groups_frac": self.flat_groups / max(self.seen_groups, 1), "sampling_rounds": rounds,
                   **{f"time/{k}": v for k, v in self.time.items()}, "score/infra_errors": self.infra_errors,
                   "rollout_tokens_per_s": lengths.sum().item() / max(self.time["generate"], 1e-9)}
        if self.staleness is not None:
            metrics["rollout/staleness"] = self.staleness
        metrics.update({f"reward/{k}": sum(v) / len(v) for k, v in self.components.items()})
        metrics.update({f"accuracy/{k}": sum(v) / len(v) for k, v in self.accuracy.items() if v})  # v empty: all failed
        return metrics


def batch_logprobs(model, r: Rollouts, micro: int, temperature: float, bucket: bool = True) -> torch.Tensor:
    """[N, T] log-probs of ``r``'s completion tokens (0 on padding), in ``r``'s row
    order, computed ``micro`` rows at a time (bucketed by length and trimmed with ``bucket``)."""
    model.eval()
    return per_token(r, micro, bucket, lambda inputs: token_logprobs(model, *inputs, temperature)[0])
