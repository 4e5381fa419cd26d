"""Run by tests/test_distributed.py under torchrun: one update on this rank's
half of a saved batch, DDP or FSDP over gloo; rank 0 saves the updated weights."""

import sys

import torch
from torch.distributed.tensor import DTensor

from thinkgym.trainer import distributed
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import Batch
from thinkgym.trainer.engines.rollouts import select
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.models.policy import load_model


def main(model_path: str, batch_path: str, out_path: str, agg: str, strategy: str) -> None:
    torch.set_num_threads(1)
    distributed.init("cpu")
    rank, world = distributed.rank(), distributed.world()
    config = load_config(None, [f"model.path={model_path}", "train.prompts_per_step=4", "train.group_size=4",
                                "train.mini_batch_size=16", "train.micro_batch_size=4", "train.lr=0.01",
                                f"algorithm.agg={agg}"])
    full: Batch = torch.load(batch_path, weights_only=False)
    n = len(full.rollouts.texts)
    keep = (torch.arange(n) // (n // world)) == rank  # whole groups per rank
    batch = Batch(select(full.rollouts, keep), full.rewards[keep], full.loss_mask[keep], {}, [], full.advantages[keep])
    model, _ = load_model(model_path)
    module = distributed.wrap(model, "cpu", strategy)
    if strategy == "fsdp":
        assert all(isinstance(p, DTensor) for p in model.parameters())
        with distributed.full_params(module):  # whole weights, and no collective per forward: ranks may differ
            assert not any(isinstance(p, DTensor) for p in model.parameters())
            for _ in range(rank + 1):
                model(input_ids=batch.rollouts.prompt_ids[:2], attention_mask=batch.rollouts.prompt_mask[:2])
        assert all(isinstance(p, DTensor) for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    stats = update_policy(module, optimizer, scheduler, batch, config, torch.Generator().manual_seed(0))
    params = [p.full_tensor() if isinstance(p, DTensor) else p.detach() for p in model.parameters()]  # all ranks gather
    if rank == 0:
        torch.save({"params": params, "stats": stats}, out_path)
    distributed.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
