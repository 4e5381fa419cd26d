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
from typing import Any, Callable

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


def gather_state(model, optimizer) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(model weights, optimizer state) for :func:`save_checkpoint`, whole and on
    the CPU on rank 0 (empty on other ranks). Every rank calls this: FSDP shards
    are gathered. The optimizer state is keyed by parameter name, so it loads
    back under either strategy. The weights are None unless FSDP sharded
    ``model``: a whole model saves itself (a peft model only its adapters)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.tensor import DTensor

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sharded = any(isinstance(p, DTensor) for p in model.parameters())
    weights = get_model_state_dict(model, options=full) if sharded else None
    return weights, get_optimizer_state_dict(model, optimizer, options=full)


def load_optimizer_state(model, optimizer, state: dict[str, Any]) -> None:
    """Load an optimizer state from :func:`gather_state` (each rank keeps its shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if any(isinstance(key, int) for key in state["state"]):
        raise CheckpointError("cannot resume: the checkpoint's optimizer state is keyed by index "
                              "(written by an older thinkgym), not by parameter name")
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def save_checkpoint(out: Path, model, tokenizer, trainer_state: dict[str, Any],
                    weights: dict[str, Any] | None = None, write_more: Callable[[Path], None] | None = None) -> Path:
    """Write model, tokenizer and ``trainer_state`` (optimizer, scheduler, step,
    RNG states...) to ``out/checkpoint`` atomically. ``weights``: the model's
    full state dict when ``model`` itself holds only shards (see :func:`gather_state`).
    ``write_more(folder)`` adds to the checkpoint being written (PPO's critic)."""
    staging = Path(tempfile.mkdtemp(prefix="checkpoint.tmp-", dir=out))
    try:
        model.save_pretrained(staging, state_dict=weights)
        tokenizer.save_pretrained(staging)
        torch.save(trainer_state, staging / STATE_FILE)
        if write_more:
            write_more(staging)
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
