"""Data-parallel training on 2 CPU processes (gloo), DDP and FSDP: one step
equals a single-process step on the same global batch, and torchrun runs
train/resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import thinkgym
from thinkgym.trainer import checkpoint as ckpt, distributed
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import TaskSampler
from thinkgym.trainer.grpo import collect_grpo_batch
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.typed_config import ConfigError

from conftest import policy_of
from test_trainer import write_config  # noqa: F401 - also registers tests/Seven-v0

WORKER = Path(__file__).with_name("distributed_worker.py")


def torchrun(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("agg,strategy", [("token-mean", "ddp"), ("seq-mean-token-mean", "ddp"), ("token-mean", "fsdp")])
def test_two_process_step_equals_single_process_step(micro_model, tmp_path, agg, strategy):
    overrides = [f"model.path={micro_model}", "train.prompts_per_step=4", "train.group_size=4",
                 "train.mini_batch_size=16", "train.micro_batch_size=4", "train.lr=0.01", "train.score_workers=1",
                 "sampling.max_new_tokens=12", f"algorithm.agg={agg}"]
    config = load_config(None, overrides)
    model, tokenizer = load_model(micro_model)
    envs = [thinkgym.make("tests/Seven-v0")]
    torch.manual_seed(3)
    batch = collect_grpo_batch(0, config, policy_of(config, model, tokenizer),
                               TaskSampler(envs, [1.0], 0, set()), workers=1)
    assert batch.advantages.abs().sum() > 0 and batch.loss_mask.sum(1).unique().numel() > 1  # ragged, informative
    torch.save(batch, tmp_path / "batch.pt")

    single, _ = load_model(micro_model)
    optimizer = torch.optim.SGD(single.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    stats = update_policy(distributed.wrap(single, "cpu"), optimizer, scheduler, batch, config,
                          torch.Generator().manual_seed(0))

    done = torchrun(WORKER, micro_model, tmp_path / "batch.pt", tmp_path / "two.pt", agg, strategy)
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    before = [p.detach() for p in load_model(micro_model)[0].parameters()]
    moved = max((a - b).abs().max().item() for a, b in zip(single.parameters(), before))
    assert moved > 1e-4  # the step did something
    for got, want in zip(two["params"], single.parameters()):
        assert torch.allclose(got, want.detach(), atol=1e-6, rtol=1e-4)
    assert two["stats"]["grad_norm"] == pytest.approx(stats["grad_norm"], rel=1e-4)


@pytest.mark.parametrize("strategy,preset", [("ddp", "grpo"), ("fsdp", "grpo"), ("fsdp", "ppo"),  # ppo: critic too
                                             ("fsdp", "ppo-shared")])  # a value head in the policy's root group
def test_nproc_2_trains_and_resumes(micro_model, tmp_path, strategy, preset):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", micro_model, out, preset, steps=2, prompts_per_step=4)
    command = [sys.executable, "-m", "thinkgym", "train", "--nproc", "2", "--set", f"train.strategy={strategy}"]
    first = subprocess.run([*command, "--config", config], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    more = write_config(tmp_path / "c.yaml", micro_model, out, preset, steps=3, prompts_per_step=4)
    again = subprocess.run([*command, "--config", more, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # rank 0 alone logs
    state = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 3 and len(state["rng"]) == 2
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    # A plain Hugging Face checkpoint and a whole optimizer state, keyed by parameter name, whatever the strategy.
    saved = dict(load_model(str(out / "checkpoint"))[0].named_parameters())
    head = {"value_head.weight", "value_head.bias"} if preset == "ppo-shared" else set()  # trained with the policy
    assert set(state["optimizer"]["state"]) == set(saved) | head
    assert all(s["exp_avg"].shape == saved[name].shape for name, s in state["optimizer"]["state"].items()
               if name not in head)


def test_fsdp_needs_a_known_strategy_and_decoder_layers(micro_model):
    with pytest.raises(ConfigError, match="train.strategy: must be one of 'ddp', 'fsdp'"):
        load_config(None, ["train.strategy=zero3"])
    model, _ = load_model(micro_model)
    model._no_split_modules = None  # FSDP shards by the layers a model names here
    with pytest.raises(ConfigError, match="names none"):
        distributed._shard(distributed.TokenLogprobs(model), model, "cpu")


def test_optimizer_state_is_keyed_by_parameter_name(micro_model):
    model, _ = load_model(micro_model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(input_ids=torch.ones(1, 3, dtype=torch.long)).logits.sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # as on resume: a fresh model has no gradients
    weights, state = ckpt.gather_state(model, optimizer)
    assert weights is None and set(state["state"]) == {name for name, _ in model.named_parameters()}
    again = torch.optim.AdamW(model.parameters(), lr=0.01)
    ckpt.load_optimizer_state(model, again, state)
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ckpt.CheckpointError, match="keyed by index"):
        ckpt.load_optimizer_state(model, again, optimizer.state_dict())
