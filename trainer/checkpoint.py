"""Run directories and atomic checkpoints.

A run directory holds ``thinkgym_run.json`` (the config), ``metrics.jsonl``,
``samples.jsonl`` and ``checkpoint/``. A checkpoint is written to a temporary
folder and renamed into place, so ``checkpoint/`` is always whole: a process
killed mid-write leaves the previous one (or ``checkpoint.old/``) intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

RUN_MARKER = "thinkgym_run.json"
STATE_FILE = "trainer_state.pt"


class CheckpointError(ValueError):
    """A run directory that cannot be used as asked."""


def prepare_run_dir(out: Path, config: dict[str, Any], resume: bool) -> None:
    """Create ``out`` for a new run, or check it holds a run to resume. A folder
    that is not a thinkgym run is never written into."""
    marker = out / RUN_MARKER
    if resume:
        if not marker.is_file():
            raise CheckpointError(f"{out} is not a thinkgym run directory (no {RUN_MARKER}); nothing to resume")
        if latest_checkpoint(out) is None:
            raise CheckpointError(f"{out} has no checkpoint to resume from")
        return
    if marker.is_file():
        raise CheckpointError(f"{out} already holds a thinkgym run; pass --resume to continue it or choose another output.dir")
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not a thinkgym run directory; refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(config, indent=2))


def latest_checkpoint(out: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):
        path = out / name
        if (path / STATE_FILE).is_file():
            return path
    return None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, model, tokenizer, trainer_state: dict[str, Any]) -> Path:
    """Write model, tokenizer and ``trainer_state`` (optimizer, scheduler, step,
    RNG states...) to ``out/checkpoint`` atomically."""
    staging = Path(tempfile.mkdtemp(prefix="checkpoint.tmp-", dir=out))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        torch.save(trainer_state, staging / STATE_FILE)
        final, old = out / "checkpoint", out / "checkpoint.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def load_trainer_state(path: Path) -> dict[str, Any]:
    # Our own file: optimizer and RNG states are not plain tensors, so weights_only=False.
    return torch.load(path / STATE_FILE, weights_only=False)
