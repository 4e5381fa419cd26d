"""A Bradley-Terry reward model (``algorithm.objective: reward_model``), read top
to bottom, and its use as a reward in RL (:class:`ModelReward`).

The model is a causal LM with a scalar value head on its decoder (the head PPO's
shared-trunk critic uses). ``r(x, y)`` is the head's value at the state after
the last completion token, the one that predicts EOS: the whole prompt and
completion are in view. A step takes ``data.batch_size`` preference pairs of
``data.path`` and minimises ``-log sigmoid(r(x, y_w) - r(x, y_l) - margin)``
(:func:`~thinkgym.trainer.losses.bradley_terry_loss`; Ouyang et al. 2022, the
margin as in Llama 2). Before and after, it reports its pairwise accuracy on the
held-out pairs of ``data.eval_path``.

A checkpoint is the causal LM's folder plus ``value_head.pt``: an env takes it
as a reward component with ``reward_models: [{model: <checkpoint>, weight: 0.5}]``
(:class:`ModelReward`, scored on the trainer's device, so ``rewards/`` stays free
of torch).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer.accumulate import accumulate_and_step
from thinkgym.trainer.batching import per_token
from thinkgym.trainer.collect import Batch
from thinkgym.trainer.data import Dataset, Example, encode, render
from thinkgym.trainer.losses import bradley_terry_loss
from thinkgym.trainer.models.builtin import ModelLoadError, check_model_path
from thinkgym.trainer.models.critic import VALUE_HEAD, load_critic, save_value_head, shared_critic, split_shared_head
from thinkgym.trainer.models.policy import load_tokenizer
from thinkgym.trainer.sft import demonstrations_batch, file_batch


class RewardModelObjective:
    """The objective for :func:`thinkgym.trainer.run.train`: ``run.data`` holds the
    training pairs, ``run.eval_data`` the held-out ones; the value head is on the
    policy's model (attached by the run, :func:`saved_head`)."""

    def __init__(self, run):
        self.run = run

    def step(self, step: int) -> tuple[Batch, dict[str, float]]:
        run, margin = self.run, self.run.config.reward_model.margin
        pairs = file_batch(run, step)
        started = time.perf_counter()
        t = run.config.train

        def loss_fn(mb, mask):
            rewards = final_values(run.module(*mb.inputs, 1.0, False)[2], mb.inputs[3])
            loss, stats = bradley_terry_loss(rewards[0::2], rewards[1::2], torch.tensor(margin) if margin else None)
            return loss, {f"rm/{k}": v for k, v in stats.items()}

        stats = accumulate_and_step(run.module, run.optimizer, pairs, pairs.completion_mask, loss_fn,
                                    agg="seq-mean-token-mean", epochs=t.epochs_per_batch,
                                    mini_batch_size=t.mini_batch_size, micro_batch_size=t.micro_batch_size,
                                    bucket=t.bucket_by_length, max_grad_norm=t.max_grad_norm, rng=run.shuffle_rng,
                                    group=2, row_stats=True)
        run.scheduler.step()
        return demonstrations_batch(pairs), {**stats, "time/update": time.perf_counter() - started}

    def evaluate(self, progress: bool) -> dict[str, float]:
        """The fraction of held-out pairs whose chosen completion scores higher."""
        run = self.run
        rewards = pair_rewards(shared_critic(run.policy.model), run.policy.tokenizer, run.eval_data, run.device,
                               run.config.train.micro_batch_size)
        return {"pairwise_accuracy": (rewards[0::2] > rewards[1::2]).float().mean().item()}

    def checkpoint(self, policy_weights: dict | None) -> tuple[dict, Callable[[Path], None] | None]:
        """The value head goes next to the causal LM: the checkpoint is a reward model."""
        head = split_shared_head(self.run.policy.model, policy_weights)[1]
        return {}, lambda folder: save_value_head(head, folder)


def saved_head(checkpoint: Path | None) -> Path | None:
    """Where a reward-model checkpoint keeps its value head."""
    return checkpoint / VALUE_HEAD if checkpoint else None


def final_values(values: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """``[N]``: each row's value at its last completion token's state (the one
    that predicts that token: with EOS last, the state after the whole text)."""
    last = (completion_mask.sum(1) - 1).clamp(min=0)
    return values.gather(1, last[:, None]).squeeze(1)


@torch.no_grad()
def example_rewards(critic, tokenizer, examples: list[Example], device: str, micro: int) -> torch.Tensor:
    """``[N]`` rewards ``r(x, y)`` of ``examples`` by ``critic``, in micro-batches of ``micro`` rows."""
    critic.eval()
    rollouts = encode(tokenizer, examples, device)
    return final_values(per_token(rollouts, micro, True, lambda inputs: critic(*inputs)), rollouts.completion_mask)


def pair_rewards(critic, tokenizer, pairs: Dataset, device: str, micro: int) -> torch.Tensor:
    """``[2P]`` rewards of every pair's chosen and rejected completions, alternating."""
    return example_rewards(critic, tokenizer, [e for row in pairs.rows for e in row], device, micro)


class ModelReward:
    """A trained reward model as a reward component (an env's ``reward_models``
    entry): ``score(prompts, completions)`` in batches of ``micro`` rows."""

    def __init__(self, path: str, weight: float, name: str, dtype: str, device: str, micro: int):
        if not (check_model_path(path) / VALUE_HEAD).is_file():
            raise ModelLoadError(f"{path} is not a reward model: it has no {VALUE_HEAD} "
                                 "(train one with algorithm.objective: reward_model)")
        self.critic = load_critic(path, dtype, device)
        self.tokenizer = load_tokenizer(path)
        self.weight, self.name, self.device, self.micro = weight, name, device, micro

    def score(self, prompts: list, completions: list[str]) -> torch.Tensor:
        """``[N]`` rewards of ``completions`` to ``prompts`` (each a string, or the
        chat messages an env opens with, rendered by this model's chat template)."""
        examples = [render(p, c if isinstance(p, str) else [{"role": "assistant", "content": c}], self.tokenizer)
                    for p, c in zip(prompts, completions)]
        return example_rewards(self.critic, self.tokenizer, examples, self.device, self.micro).cpu()
