"""How completions are sampled: plain data that needs no torch, so the CLI
checks it before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
