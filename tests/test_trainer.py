"""The training loop on a micro model: an update moves the policy the right way,
runs log and checkpoint, resume continues, and a SIGKILLed run resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import thinkgym
from thinkgym.envs import Reward, TextEnv, make_generator
from thinkgym.rewards import Score
from thinkgym.trainer import distributed
from thinkgym.trainer.checkpoint import CheckpointError
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import TaskSampler, batch_logprobs
from thinkgym.trainer.grpo import collect_grpo_batch
from thinkgym.trainer.policy_update import update_policy
from thinkgym.trainer.run import train
from thinkgym.trainer.models.tiny import TINY_ENV

from conftest import policy_of

ENV_KWARGS = {k: v for k, v in TINY_ENV.items() if k != "id"}


def has_seven(completion: str) -> float:
    """A reward a random policy earns sometimes: the completion contains a 7."""
    return Score(float("7" in completion), "seven" if "7" in completion else "no_seven")


def seven_env(**kwargs):
    return TextEnv(make_generator("arithmetic", size=1000, seed=kwargs.pop("seed", 0), digits=2, terms=2, ops="+-"),
                   [Reward("seven", has_seven)], style="text", prompt="{question}")


thinkgym.register("tests/Seven-v0", seven_env)


def write_config(path, model, out, preset="grpo", **train):
    """A small run's YAML; preset ``ppo-shared`` is ``ppo`` with ``critic.shared_trunk``,
    and ``dpo`` is ``algorithm.objective: dpo`` with DAPO's soft overlong penalty
    over the whole length, so that a group's rewards differ (as DPO's pairs need)
    even where the micro model answers nothing right."""
    critic = {"shared_trunk": preset == "ppo-shared"}
    algorithm = {"objective": "dpo", "overlong": "soft_penalty", "overlong_buffer": 1.0} if preset == "dpo" else \
        {"preset": preset.removesuffix("-shared")}
    config = {
        "model": {"path": model},
        "envs": [{"id": "thinkgym/Math-v0", "kwargs": {**ENV_KWARGS, "seed": 1}, "eval_kwargs": {"seed": 0}}],
        "sampling": {"max_new_tokens": 48 if preset == "dpo" else 16},  # dpo: room for lengths to differ
        "algorithm": algorithm,
        "critic": critic,
        "train": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "mini_batch_size": 4, "micro_batch_size": 2,
                  "lr": 1e-3, "score_workers": 1, "cpu_threads": 1, **train},
        "output": {"dir": str(out), "eval_tasks": 2, "checkpoint_every": 1, "samples_every": 1, "samples_per_log": 100},
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_one_update_raises_the_likelihood_of_better_completions(micro_model, tmp_path):
    torch.manual_seed(0)
    config = load_config(None, [f"model.path={micro_model}", "envs=[{id: tests/Seven-v0}]", "train.prompts_per_step=4",
                                "train.group_size=4", "train.mini_batch_size=8", "train.micro_batch_size=8",
                                "train.lr=0.01", "sampling.max_new_tokens=12", "train.score_workers=1", "train.cpu_threads=1",
                                "algorithm.preset=dr_grpo"])
    from thinkgym.trainer.models.policy import load_model
    model, tokenizer = load_model(micro_model)
    envs = [thinkgym.make("tests/Seven-v0")]
    batch = collect_grpo_batch(0, config, policy_of(config, model, tokenizer),
                               TaskSampler(envs, [1.0], 0, set()), workers=1)
    assert batch.rewards.shape == (16,) and set(batch.rewards.tolist()) <= {0.0, 1.0}
    grouped = batch.advantages.view(4, 4)
    assert torch.allclose(grouped.sum(1), torch.zeros(4), atol=1e-5)  # dr_grpo: r - group mean
    assert batch.metrics["reward/seven"] == pytest.approx(batch.rewards.mean().item())
    if batch.advantages.abs().sum() == 0:
        pytest.fail("no group had mixed rewards; pick another seed")
    old = batch.rollouts.old_logprobs  # computed while the rewards were scored
    assert torch.allclose(old, batch_logprobs(model, batch.rollouts, 8, 1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    stats = update_policy(distributed.wrap(model, "cpu"), optimizer, scheduler, batch, config,
                          torch.Generator().manual_seed(0))
    assert stats["loss"] != 0 and stats["grad_norm"] > 0
    new = batch_logprobs(model, batch.rollouts, 8, 1.0)
    mask = batch.loss_mask.float()
    gain = ((new - old) * mask).sum(1) / mask.sum(1)
    advantaged, disadvantaged = gain[batch.advantages > 0].mean(), gain[batch.advantages < 0].mean()
    assert advantaged > disadvantaged  # the clipped surrogate pushed probability towards reward


def test_train_logs_checkpoints_and_resumes(micro_model, tmp_path):
    out = tmp_path / "run"
    config = load_config(write_config(tmp_path / "c.yaml", micro_model, out))
    lines = []
    summary = train(config, progress=False, log=lines.append)
    assert summary["answer_extraction"] == ["strict"] and "answer extraction: thinkgym/Math-v0 strict" in lines
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ["reward/mean", "reward/std", "reward/accuracy", "accuracy/thinkgym/Math-v0", "length/mean",
                "length/max", "truncated_frac", "zero_variance_groups_frac", "clip_frac_low", "clip_frac_high",
                "kl_ref", "entropy", "grad_norm", "lr", "rollout_tokens_per_s", "train_tokens_per_s", "time/step",
                "time/generate", "time/score_wait", "time/logprobs", "time/update", "loss"]:
        assert key in rows[0], key
        assert rows[0][key] == rows[0][key]  # not NaN
    assert (out / "checkpoint" / "config.json").is_file() and (out / "curves.png").stat().st_size > 1000
    assert set(summary["before"]) == set(summary["after"]) == {"thinkgym/Math-v0"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {"step", "task_id", "completion", "reward", "reasons"} <= set(samples[0])

    more = load_config(write_config(tmp_path / "c.yaml", micro_model, out, steps=3))
    train(more, resume=True, progress=False, log=lambda s: None)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_run_directories_are_guarded(micro_model, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a thinkgym run directory"):
        train(load_config(write_config(tmp_path / "c.yaml", micro_model, foreign)), progress=False)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(load_config(write_config(tmp_path / "c.yaml", micro_model, tmp_path / "empty")), resume=True)


def run_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "thinkgym", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def kill_then_resume(config, out, steps: int) -> None:
    """Run ``config``, SIGKILL it once step 2's checkpoint is on disk (before step
    ``steps``, its last), then resume it to the end."""
    process = run_cli("--config", config)
    deadline = time.monotonic() + 300
    state = out / "checkpoint" / "trainer_state.pt"
    while time.monotonic() < deadline:
        if state.is_file() and torch.load(state, weights_only=False)["step"] >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= torch.load(state, weights_only=False)["step"] < steps
    resumed = run_cli("--config", config, "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()


def samples_by_step(out):
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [(r["step"], r["task_id"], r["completion"]) for r in rows]


@pytest.mark.parametrize("preset", ["grpo", "ppo", "ppo-shared", "dpo"])  # ppo: the critic and its optimizer resume too
def test_sigkill_then_resume_continues_as_if_uninterrupted(micro_model, tmp_path, preset):
    whole = tmp_path / "whole"
    assert run_cli("--config", write_config(tmp_path / "a.yaml", micro_model, whole, preset, steps=5)).wait(300) == 0

    killed = tmp_path / "killed"
    kill_then_resume(write_config(tmp_path / "b.yaml", micro_model, killed, preset, steps=5), killed, 5)
    assert [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert samples_by_step(killed) == samples_by_step(whole)  # same tasks, same sampled completions


def test_lora_run_trains_adapters_against_the_adapter_free_reference(micro_model, tmp_path):
    out = tmp_path / "lora"
    lora = ["model.lora_rank=4", "algorithm.beta=0.1", "envs=[{id: tests/Seven-v0}]", "train.group_size=4",
            "train.mini_batch_size=8", "train.lr=0.01"]
    config = load_config(write_config(tmp_path / "l.yaml", micro_model, out, steps=1), lora)
    train(config, progress=False, log=lambda s: None)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # the first update starts at the reference
    assert (out / "checkpoint" / "adapter_config.json").is_file()
    more = load_config(write_config(tmp_path / "l.yaml", micro_model, out, steps=2), lora)
    train(more, resume=True, progress=False, log=lambda s: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["kl_ref"] > 0  # adapters moved away from the base


def test_single_update_per_batch_skips_the_old_logprob_pass(micro_model):
    config = load_config(None, [f"model.path={micro_model}", "envs=[{id: tests/Seven-v0}]", "train.prompts_per_step=2",
                                "train.group_size=4", "train.mini_batch_size=8", "train.micro_batch_size=8",
                                "train.score_workers=1", "sampling.max_new_tokens=8", "algorithm.beta=0"])
    from thinkgym.trainer.models.policy import load_model
    model, tokenizer = load_model(micro_model)
    envs = [thinkgym.make("tests/Seven-v0")]
    batch = collect_grpo_batch(0, config, policy_of(config, model, tokenizer),
                               TaskSampler(envs, [1.0], 0, set()), workers=1)
    assert batch.rollouts.old_logprobs is None  # the ratio is 1 by construction: no extra forward pass
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = update_policy(distributed.wrap(model, "cpu"), optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                          batch, config, torch.Generator().manual_seed(0))
    assert stats["approx_kl"] == 0.0 and stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0
