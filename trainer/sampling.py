"""How completions are sampled, and where a model comes from: plain data and
checks that need no torch, so bad input is reported before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ModelLoadError(ValueError):
    """A model path or name that cannot be loaded."""


def check_model_path(path: str) -> Path:
    """A local-looking path must be a checkpoint folder; anything else is a hub name."""
    local = Path(path).expanduser()
    if path.startswith((".", "/", "~")) and not local.exists():
        raise ModelLoadError(f"model folder not found: {path}")
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"model path {path!r} is not a Hugging Face checkpoint (no config.json)")
    return local


@dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
