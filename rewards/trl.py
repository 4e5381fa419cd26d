"""Use any thinkgym reward as a TRL reward function."""

from __future__ import annotations

import functools
from typing import Any, Callable

from thinkgym.rewards.parallel import score_batch


def completion_text(completion: Any) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")
    raise TypeError(f"completion must be a string or a list of chat messages, got {type(completion).__name__}")


def as_trl(fn: Callable[..., float], workers: int | None = None) -> Callable[..., list[float]]:
    """Wrap a reward ``fn(completion, **fields) -> float`` as a TRL batch reward
    ``f(prompts, completions, **columns) -> list[float]``.

    TRL calls reward functions with keyword arguments ``prompts``, ``completions``
    and every other dataset column as a list (plus extras such as
    ``completion_ids`` and ``trainer_state``); the columns ``fn`` takes are
    passed row by row, the rest ignored. Scoring runs in ``workers`` processes.
    """

    @functools.wraps(fn)
    def reward(prompts=None, completions=None, **columns: Any) -> list[float]:
        if completions is None:
            raise TypeError(f"{fn.__name__}: TRL reward functions are called with completions=[...]")
        texts = [completion_text(c) for c in completions]
        return [float(r) for r in score_batch(fn, texts, columns, workers=workers)]

    reward.__name__ = getattr(fn, "__name__", "reward")  # TRL logs rewards/<name>
    return reward
