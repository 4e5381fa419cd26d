"""Data-parallel training over ``torch.distributed``, started by ``torchrun``.

Each rank samples and scores its own share of the step's prompts (whole
groups: advantages need all G completions of a prompt), computes log-probs
through :class:`TokenLogprobs` wrapped in DDP, so gradients are averaged across
ranks during the backward pass. Rank 0 alone writes logs and checkpoints.
Without ``torchrun`` (no ``WORLD_SIZE``) everything here is a no-op.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from thinkgym.trainer.policy import token_logprobs


def init(device: str) -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sum_scalar(value: float) -> float:
    """``value`` summed over ranks."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.item()


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks that reported it (a rank may not have
    drawn every env of a mixture)."""
    if not dist.is_initialized():
        return metrics
    gathered: list[dict[str, float]] = [{} for _ in range(world())]
    dist.all_gather_object(gathered, metrics)
    keys = {k for m in gathered for k in m}
    return {k: sum(m[k] for m in gathered if k in m) / sum(k in m for m in gathered) for k in sorted(keys)}


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (on every rank)."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, value)
    return out


class TokenLogprobs(torch.nn.Module):
    """``token_logprobs`` as a module, so DDP can wrap it: its forward is the
    training forward pass, and its backward averages gradients across ranks."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float, with_entropy: bool):
        return token_logprobs(self.model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                              temperature, with_entropy)


def wrap(model, device: str) -> torch.nn.Module:
    """The module the update calls: DDP over :class:`TokenLogprobs` when running
    on several ranks, else :class:`TokenLogprobs` itself."""
    module = TokenLogprobs(model)
    if world() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)
