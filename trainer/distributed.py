"""Data-parallel training over ``torch.distributed``, started by ``torchrun``.

Each rank samples and scores its own share of the step's prompts (whole
groups: advantages need all G completions of a prompt), computes log-probs
through :class:`TokenLogprobs` wrapped in DDP (a full copy of the model per
rank) or sharded with FSDP2 (``train.strategy: fsdp``: parameters, gradients
and optimizer state split over the ranks), so gradients are averaged across
ranks during the backward pass. Rank 0 alone writes logs and checkpoints.
Without ``torchrun`` (no ``WORLD_SIZE``) everything here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import torch
import torch.distributed as dist

from thinkgym.trainer.models.critic import shared_value_head, values_of
from thinkgym.trainer.models.logprobs import completion_states, head_logprobs
from thinkgym.trainer.typed_config import ConfigError


def init(device: str) -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device == "cuda":  # one GPU per process: "cuda" then means this rank's GPU
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")


def close() -> None:
    """Leave the process group once every rank is done, then give gloo's worker
    threads a moment without the GIL: a thread that retires a finished collective
    may still hold tensors whose Python objects it must release, and if the
    interpreter is already shutting down when it asks for the GIL, the process
    aborts ("terminate called without an active exception") after its work is
    done (pytorch/pytorch#179291; seen 1 run in 40 here under CPU load)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        time.sleep(0.2)  # releases the GIL; the retiring thread needs microseconds once scheduled


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
    training forward pass, and its backward averages gradients across ranks.
    Returns ``(logprobs, entropy, values)``; ``values`` ([N, T], from the same
    decoder pass) when the policy carries a shared value head, else None."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float, with_entropy: bool):
        hidden = completion_states(self.model.get_decoder(), prompt_ids, prompt_mask, completion_ids, completion_mask)
        logprobs, entropy = head_logprobs(self.model.get_output_embeddings(), hidden, completion_ids, completion_mask,
                                          temperature, with_entropy)
        value_head = shared_value_head(self.model)
        values = None if value_head is None else values_of(value_head, hidden, completion_mask)
        # Not a view: FSDP hooks its root's outputs for the backward pass, and an
        # in-place op on a view would drop that hook (FSDP warns of views).
        return logprobs.clone(), entropy, values


def wrap(model, device: str, strategy: str = "ddp") -> torch.nn.Module:
    """The module the update calls: :class:`TokenLogprobs` over ``model``; on
    several ranks wrapped in DDP (``strategy="ddp"``) or sharded by FSDP2
    (``"fsdp"``, see :func:`_shard`). Once sharded, ``model`` itself holds only
    this rank's shards: run it outside the update only inside :func:`full_params`."""
    module = TokenLogprobs(model)
    if world() == 1:
        return module
    if strategy == "fsdp":
        mesh = _shard(module, model, device)
        # FSDP takes the first module to run forward as its root. Rollouts call the
        # model's layers outside this module, so run it once now (one token, all ranks).
        one = torch.ones(1, 1, dtype=torch.long, device=mesh.device_type)
        with torch.no_grad():
            module(one, one, one, one, 1.0, False)
        module.reshard()  # the root keeps its weights gathered after a forward (for the backward)
        return module
    return _ddp(module, device)


def wrap_critic(critic, device: str, strategy: str = "ddp") -> torch.nn.Module:
    """PPO's critic (:class:`~thinkgym.trainer.models.critic.Critic`) as :func:`wrap` does
    the policy: itself on one rank, else in DDP or sharded by FSDP2 (it runs only
    through its own forward, so it is its own root)."""
    if world() == 1:
        return critic
    if strategy == "fsdp":
        _shard(critic, critic.trunk, device)
        return critic
    return _ddp(critic, device)


def _ddp(module: torch.nn.Module, device: str) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)


def _shard(module: torch.nn.Module, model, device: str):
    """FSDP2 (``fully_shard``) over ``module``: one parameter group per decoder
    layer of ``model`` (each gathered just for its own forward and backward), and
    the rest (embeddings, final norm, LM or value head, tied or not) in the root
    group of ``module`` itself, whose forward is the update's forward pass.
    Gradients are reduce-scattered, averaged over ranks as under DDP. Returns the mesh."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        raise ConfigError(f"train.strategy fsdp shards a model by its decoder layers, and "
                          f"{type(model).__name__} names none (_no_split_modules); use train.strategy ddp")
    mesh = init_device_mesh(torch.device(device).type, (world(),))
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return mesh


@contextlib.contextmanager
def full_params(module: torch.nn.Module):
    """Within: every parameter of ``module`` whole on every rank, if FSDP sharded
    it (else a no-op). All ranks enter together (each shard group is all-gathered
    once), and inside, the model runs without collectives: ranks may sample
    different numbers of tokens. Rollout engines
    see full tensors. On exit each rank drops the gathered copies (no collective)."""
    if world() == 1:  # nothing is sharded
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    groups = [m for m in module.modules() if isinstance(m, FSDPModule)]
    layers = [m for m in groups if m is not module]  # the root keeps its params through a forward anyway
    for group in groups:
        group.unshard()
    for layer in layers:
        layer.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for layer in layers:
            layer.set_reshard_after_forward(True, recurse=False)
        for group in groups:
            group.reshard()
