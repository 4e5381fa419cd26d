"""Sampling a model on environment tasks and scoring the samples.

Used for the trainer's before/after held-out accuracy and by ``thinkgym eval``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkgym.trainer.policy import Rollouts, Sampling
from thinkgym.trainer.rollout import RolloutEngine


def render_prompts(env, tokenizer, tasks) -> tuple[list[str], bool]:
    """Prompt strings for ``tasks``; chat messages go through the tokenizer's chat
    template. Returns (prompts, is_chat)."""
    prompts = [env.prompt_of(t) for t in tasks]
    if prompts and isinstance(prompts[0], list):
        if tokenizer.chat_template is None:
            raise ValueError("a chat-style environment needs a tokenizer with a chat template; "
                             "use style: text or r1_zero for base models")
        return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts], True
    return prompts, False


@dataclass
class Samples:
    """``n`` scored samples for each of ``tasks`` (task-major order)."""

    tasks: list[dict]
    n: int
    texts: list[str]
    scored: list           # thinkgym.envs.Scored per sample
    lengths: torch.Tensor  # completion tokens per sample
    truncated: torch.Tensor
    rollouts: Rollouts | None = None

    def correct(self, accuracy_name: str) -> torch.Tensor:
        return torch.tensor([s.rewards[accuracy_name] >= 1.0 for s in self.scored])


@torch.no_grad()
def sample_and_score(engine: RolloutEngine, env, tasks, n: int, sampling: Sampling, batch_prompts: int = 32,
                     workers: int | None = None, keep_rollouts: bool = False) -> Samples:
    """Generate ``n`` completions per task with ``engine`` (``batch_prompts``
    prompts at a time) and score them with ``env``."""
    base = env.unwrapped
    texts, lengths, truncated, parts = [], [], [], []
    for start in range(0, len(tasks), batch_prompts):
        chunk = tasks[start:start + batch_prompts]
        prompts, chat = render_prompts(base, engine.tokenizer, chunk)
        rollouts = engine.generate(prompts, n, sampling, add_special_tokens=not chat)
        texts += rollouts.texts
        lengths.append(rollouts.completion_mask.sum(1))
        truncated.append(rollouts.truncated)
        parts.append(rollouts)
    repeated = [t for t in tasks for _ in range(n)]
    scored = base.score_many(texts, repeated, workers=workers)
    rollouts = parts[0] if keep_rollouts and len(parts) == 1 else None
    return Samples(list(tasks), n, texts, scored, torch.cat(lengths), torch.cat(truncated), rollouts)
