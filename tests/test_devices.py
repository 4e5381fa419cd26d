"""The same numbers on every device: the static engine's log-probs against the
trainer's (float32 and bfloat16), and a training step through a process group
of one (DDP, FSDP2) against a plain step. Each runs on the CPU (gloo) here and
on CUDA (nccl) where there is one; ``pytest -k cuda`` selects the CUDA cases
(scripts/gpu_check.sh)."""

import pytest
import torch
import torch.distributed as dist

import thinkgym
from thinkgym.trainer import distributed
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import TaskSampler
from thinkgym.trainer.grpo import collect_grpo_batch
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.engines.static import StaticCacheEngine

from conftest import policy_of
from test_trainer import write_config  # noqa: F401 - registers tests/Seven-v0

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
PROMPTS = [f"Compute {10 + i} + {40 + 3 * i}." for i in range(6)]
GAP_BOUNDS = {"float32": (1e-5, 1e-4), "bfloat16": (1e-2, 0.25)}
"""(mean, max) of |rollout - trainer| per token. bfloat16 keeps 8 bits of mantissa, and
the engine (one token at a time, a KV cache) and the trainer (the whole sequence at
once) round differently: on the CPU the gap was about 1e-3 on average, 0.03 at most."""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", DEVICES)
def test_static_engine_logprobs_match_the_trainer_on(device, dtype, micro_model):
    model, tokenizer = load_model(micro_model, dtype, device)
    torch.manual_seed(0)
    rollouts = StaticCacheEngine(model, tokenizer).generate(PROMPTS, 4, Sampling(temperature=0.8, max_new_tokens=24))
    assert rollouts.completion_ids.device.type == device
    trainer, _ = token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                                rollouts.completion_mask, temperature=0.8)
    gap = (trainer.float() - rollouts.rollout_logprobs.float()).abs()[rollouts.completion_mask == 1]
    mean_bound, max_bound = GAP_BOUNDS[dtype]
    assert gap.numel() > 50 and gap.mean() < mean_bound and gap.max() < max_bound


@pytest.fixture
def process_group_of_one(tmp_path, request):
    """A process group of one rank in this process (gloo on the CPU, nccl on CUDA),
    torn down afterwards so that no other test sees it."""
    backend = "nccl" if request.node.callspec.params["device"] == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("device", DEVICES)
def test_a_step_through_a_process_group_equals_a_plain_step_on(device, strategy, micro_model, process_group_of_one):
    config = load_config(None, [f"model.path={micro_model}", "train.prompts_per_step=4", "train.group_size=4",
                                "train.mini_batch_size=16", "train.micro_batch_size=4", "train.lr=0.01",
                                "train.score_workers=1", "sampling.max_new_tokens=12"])
    model, tokenizer = load_model(micro_model, device=device)
    envs = [thinkgym.make("tests/Seven-v0")]
    torch.manual_seed(3)
    batch = collect_grpo_batch(0, config, policy_of(config, model, tokenizer), TaskSampler(envs, [1.0], 0, set()), workers=1)
    assert batch.advantages.abs().sum() > 0

    def one_step(module, params) -> dict:
        optimizer = torch.optim.SGD(params, lr=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        return update_policy(module, optimizer, scheduler, batch, config, torch.Generator().manual_seed(0))

    plain, _ = load_model(micro_model, device=device)
    want = one_step(distributed.TokenLogprobs(plain), plain.parameters())
    grouped, _ = load_model(micro_model, device=device)
    module = distributed.TokenLogprobs(grouped)
    if strategy == "fsdp":
        distributed._shard(module, grouped, device)  # in place; the update's forward makes it the root
    else:
        ids = [torch.cuda.current_device()] if device == "cuda" else None
        module = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    got = one_step(module, grouped.parameters())

    moved = max((a.detach().cpu() - b).abs().max().item()
                for a, b in zip(plain.parameters(), load_model(micro_model)[0].parameters()))
    assert moved > 1e-4  # the step did something
    for a, b in zip(grouped.parameters(), plain.parameters()):
        a = a.full_tensor() if hasattr(a, "full_tensor") else a
        assert torch.allclose(a.detach(), b.detach(), atol=1e-6, rtol=1e-4)
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
