"""PPO with a critic (Schulman et al. 2017), as InstructGPT applies it to language
models (Ouyang et al. 2022), read top to bottom.

A step collects G completions per prompt as the GRPO family does (any G >= 1),
then, instead of comparing a prompt's completions with each other:

1. the critic values every sampled token's state, ``V(s_t)``;
2. per-token rewards: the task reward on each completion's last token and, with
   ``beta > 0``, ``-beta * KL_t`` to the reference at every token;
3. GAE(gamma, lambda) turns them into per-token advantages; returns = A + V; the
   advantages are whitened over the batch (``whiten_advantages``);
4. the critic learns the returns with the clipped value loss (``vf_clip``), on
   its own optimizer and learning rate (``critic.lr``);
5. the policy takes the clipped-surrogate update with those advantages
   (:func:`update_policy`), once ``critic.warmup_steps`` steps have trained the
   critic alone.

With ``critic.shared_trunk`` the critic is a value head on the policy's own
decoder (TRL's former ``AutoModelForCausalLMWithValueHead``): no second model,
and steps 4 and 5 are one update of ``policy loss + vf_coef * value loss``,
with the values and log-probs from one decoder pass.

``algorithm.objective: ppo`` (``algorithm.preset: ppo``); the critic's own
settings are the ``critic`` section.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer import checkpoint as ckpt, distributed
from thinkgym.trainer.accumulate import accumulate_and_step, make_optimizer
from thinkgym.trainer.advantages import gae, whiten
from thinkgym.trainer.algorithm_config import AlgorithmConfig
from thinkgym.trainer.batching import per_token
from thinkgym.trainer.collect import Batch, collect_batch
from thinkgym.trainer.engines.rollouts import Rollouts
from thinkgym.trainer.evaluation.samples import HeldOutAccuracy
from thinkgym.trainer.losses import explained_variance, kl_penalty, value_loss
from thinkgym.trainer.models.critic import VALUE_HEAD, Critic, load_critic, save_value_head, shared_critic, split_shared_head
from thinkgym.trainer.policy_update import update_policy

CRITIC_FOLDER = "critic"  # inside a checkpoint


class PPO(HeldOutAccuracy):
    """The objective for :func:`thinkgym.trainer.run.train`; ``run`` is its
    :class:`~thinkgym.trainer.run.Run`. Sets up a separate critic (resumed with
    the run), or, with ``critic.shared_trunk``, uses the value head that
    :func:`attach_shared_head` put on the policy before the run wrapped it."""

    def __init__(self, run):
        self.run = run
        self.critic = None if run.config.critic.shared_trunk else setup_critic(
            run.config, run.base_path, run.checkpoint, run.device)

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run, critic, t = self.run, self.critic, self.run.config.train
        with distributed.full_params(run.module):  # FSDP: sample from whole weights, without collectives
            batch = collect_batch(step, run.config, run.policy, run.sampler, run.workers)
            if critic is None:  # the shared head values the states with the policy's own (whole) weights
                batch.values = batch_values(shared_critic(run.policy.model), batch.rollouts, t.micro_batch_size,
                                            t.bucket_by_length)
        started = time.perf_counter()
        if critic is not None:
            batch.values = batch_values(critic.module, batch.rollouts, t.micro_batch_size, t.bucket_by_length)
        stats = advantages(batch, run.config, run.algo)
        if critic is None:  # one update: the policy loss plus vf_coef x the value loss
            update = update_policy(run.module, run.optimizer, run.scheduler, batch, run.config, run.shuffle_rng,
                                   value_coef=run.config.critic.vf_coef)
            stats.update({("critic/" + k if k.startswith("value_") else k): v for k, v in update.items()})
        else:
            stats.update(update_critic(critic, batch, run.config, run.algo, run.shuffle_rng))
            if step >= run.config.critic.warmup_steps:
                stats.update(update_policy(run.module, run.optimizer, run.scheduler, batch, run.config,
                                           run.shuffle_rng))
        return batch, {**stats, "time/update": time.perf_counter() - started}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """On every rank (FSDP gathers the critic's shards): the critic's optimizer
        state for the trainer state, and a writer of its weights into the checkpoint.
        A shared head's weights come with the policy's (``policy_weights``) and its
        optimizer state is the policy's."""
        if self.critic is None:
            head = split_shared_head(self.run.policy.model, policy_weights)[1]
            return {}, lambda folder: save_value_head(head, folder / CRITIC_FOLDER)
        weights, optimizer_state = ckpt.gather_state(self.critic.critic, self.critic.optimizer)
        return {"critic_optimizer": optimizer_state}, lambda folder: save_critic(self.critic, weights, folder)


@dataclass
class CriticRun:
    """The critic of a run, its parallel wrapper (what the loop calls) and its optimizer."""

    critic: Critic
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer


def setup_critic(config, base_path: str, checkpoint: Path | None, device: str) -> CriticRun:
    """The critic from ``checkpoint/critic`` when resuming, else from ``critic.path``
    (a critic or causal-LM checkpoint) or, by default, the policy's base model."""
    c = config.critic
    source = str(checkpoint / CRITIC_FOLDER) if checkpoint else (c.path or base_path)
    critic = load_critic(source, config.model.dtype, device, seed=config.train.seed)
    module = distributed.wrap_critic(critic, device, config.train.strategy)
    optimizer = make_optimizer(critic, c.lr or config.train.lr, config.train.weight_decay, device)
    if checkpoint:
        ckpt.load_optimizer_state(critic, optimizer, ckpt.load_trainer_state(checkpoint)["critic_optimizer"])
    return CriticRun(critic, module, optimizer)


def token_rewards(rewards: torch.Tensor, completion_mask: torch.Tensor, kl: torch.Tensor | None,
                  beta: float) -> torch.Tensor:
    """``[N, T]`` rewards: ``rewards[i]`` on completion ``i``'s last token, minus
    ``beta * kl`` on every token (InstructGPT's per-token KL penalty); 0 on padding."""
    per_token = torch.zeros(completion_mask.shape, dtype=torch.float32, device=completion_mask.device)
    if kl is not None and beta > 0:
        per_token -= beta * kl.float() * completion_mask
    last = (completion_mask.sum(1) - 1).clamp(min=0).long()
    rows = torch.arange(len(rewards), device=per_token.device)
    per_token[rows, last] += rewards.to(per_token.device, torch.float32)  # scored on the CPU, trained on the device
    return per_token


def batch_values(module, r: Rollouts, micro: int, bucket: bool) -> torch.Tensor:
    """[N, T] values of ``r``'s completion tokens (0 on padding), ``micro`` rows at a time."""
    module.eval()
    return per_token(r, micro, bucket, lambda inputs: module(*inputs))


def advantages(batch: Batch, config, algo: AlgorithmConfig) -> dict[str, float]:
    """Steps 2-3, from ``batch.values``: fill ``batch.returns`` and per-token
    ``batch.advantages``; returns their statistics (before whitening)."""
    r = batch.rollouts
    mask = r.completion_mask.float()
    kl = kl_penalty(r.old_logprobs, r.ref_logprobs, algo.kl) if r.ref_logprobs is not None else None
    rewards = token_rewards(batch.rewards, r.completion_mask, kl, algo.beta)
    raw, batch.returns = gae(rewards, batch.values, mask, algo.gamma, algo.lam)
    batch.advantages = whiten(raw, mask) if algo.whiten_advantages else raw
    tokens = mask.sum().clamp(min=1)

    def mean(x):
        return float((x * mask).sum() / tokens)

    stats = {"advantages/mean": mean(raw), "advantages/std": (mean(raw.square()) - mean(raw) ** 2) ** 0.5,
             "critic/returns_mean": mean(batch.returns), "critic/value_mean": mean(batch.values),
             # over the batch's tokens, before the critic's update: 1 is a perfect critic
             "critic/explained_variance": float(explained_variance(batch.values, batch.returns, mask))}
    if kl is not None:
        stats["kl_ref"] = mean(kl)
    return stats


def update_critic(run: CriticRun, batch: Batch, config, algo: AlgorithmConfig, rng: torch.Generator) -> dict[str, float]:
    """Step 4: the clipped value loss over the batch, as many epochs and
    mini-batches as the policy's update."""
    t = config.train
    norm_length = float(config.sampling.max_new_tokens)

    def loss_fn(mb, mask):
        values = run.module(*mb.inputs)
        loss, stats = value_loss(values, mb.take(batch.values), mb.take(batch.returns), mask, clip=algo.vf_clip,
                                 agg=algo.agg, norm_length=norm_length)
        return loss, {"value_clip_frac": stats["value_clip_frac"]}

    stats = accumulate_and_step(run.module, run.optimizer, batch.rollouts, batch.loss_mask, loss_fn, agg=algo.agg,
                                epochs=t.epochs_per_batch, mini_batch_size=t.mini_batch_size,
                                micro_batch_size=t.micro_batch_size, bucket=t.bucket_by_length,
                                max_grad_norm=t.max_grad_norm, rng=rng)
    return {"critic/value_loss": stats["loss"], "critic/value_clip_frac": stats["value_clip_frac"],
            "critic/grad_norm": stats["grad_norm"]}


def save_critic(run: CriticRun, weights: dict | None, folder: Path) -> None:
    """Write the critic into a checkpoint folder being staged."""
    (folder / CRITIC_FOLDER).mkdir()
    run.critic.save(folder / CRITIC_FOLDER, weights)


def saved_shared_head(checkpoint: Path | None) -> Path | None:
    """Where ``checkpoint`` keeps the value head on the policy's trunk (``critic.shared_trunk``)."""
    return checkpoint / CRITIC_FOLDER / VALUE_HEAD if checkpoint else None
