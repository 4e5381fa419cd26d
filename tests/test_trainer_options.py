"""Trainer switches on a micro model: DAPO dynamic sampling, overlong handling,
stop strings, env mixtures, chat prompts, bf16 and gradient checkpointing."""

import json
import sys

import pytest
import torch

import thinkgym
from thinkgym.trainer.config import load_config
from thinkgym.trainer.collect import TaskSampler
from thinkgym.trainer.grpo import collect_grpo_batch
from thinkgym.trainer.run import train
from thinkgym.trainer.engines.hf import generate
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sampling import Sampling

from conftest import policy_of
from test_trainer import write_config  # noqa: F401 - registers tests/Seven-v0 too


def batch_for(micro_model, overrides, envs=("tests/Seven-v0",), weights=(1.0,)):
    config = load_config(None, [f"model.path={micro_model}", "train.score_workers=1", *overrides])
    model, tokenizer = load_model(micro_model)
    made = [thinkgym.make(e) for e in envs]
    torch.manual_seed(0)
    return collect_grpo_batch(0, config, policy_of(config, model, tokenizer),
                              TaskSampler(made, list(weights), 0, set()), workers=1)


def test_dapo_dynamic_sampling_keeps_only_informative_groups(micro_model):
    batch = batch_for(micro_model, ["algorithm.preset=dapo", "algorithm.overlong=mask_truncated",
                                    "train.prompts_per_step=4", "train.group_size=4", "train.mini_batch_size=16",
                                    "train.micro_batch_size=8", "sampling.max_new_tokens=12"])
    groups = batch.rewards.view(-1, 4)
    assert groups.shape[0] <= 4
    assert (groups.max(1).values != groups.min(1).values).all()  # all-equal groups were dropped
    assert batch.metrics["sampling_rounds"] >= 1 and 0 <= batch.metrics["zero_variance_groups_frac"] <= 1


def test_overlong_soft_penalty_and_truncation_mask(micro_model):
    common = ["train.prompts_per_step=2", "train.group_size=4", "train.mini_batch_size=8", "train.micro_batch_size=8",
              "sampling.max_new_tokens=6"]
    masked = batch_for(micro_model, ["algorithm.overlong=mask_truncated", *common])
    assert masked.rollouts.truncated.any()
    assert (masked.loss_mask[masked.rollouts.truncated].sum(1) == 0).all()
    penalised = batch_for(micro_model, ["algorithm.overlong=soft_penalty", "algorithm.overlong_buffer=0.5", *common])
    lengths = penalised.rollouts.completion_mask.sum(1)
    seven = torch.tensor([float("7" in t) for t in penalised.rollouts.texts])
    expected = seven + torch.clamp((3 - lengths.float()) / 3, min=-1.0, max=0.0)  # 6 tokens, buffer 3
    assert torch.allclose(penalised.rewards, expected)


def test_env_mixture_reports_accuracy_per_env(micro_model):
    batch = batch_for(micro_model, ["train.prompts_per_step=8", "train.group_size=2", "train.mini_batch_size=16",
                                    "train.micro_batch_size=8", "sampling.max_new_tokens=8"],
                      envs=("tests/Seven-v0", "thinkgym/Math-v0"), weights=(1.0, 1.0))
    assert {"accuracy/tests/Seven-v0", "accuracy/thinkgym/Math-v0"} <= set(batch.metrics)
    assert batch.rewards.shape == (16,)


def test_stop_strings_cut_completions(micro_model):
    model, tokenizer = load_model(micro_model)
    torch.manual_seed(0)
    rollouts = generate(model, tokenizer, ["Compute 12 + 34."] * 2, 4, Sampling(max_new_tokens=40, stop=(":",)))
    stopped = 0
    for text, ids, mask, truncated in zip(rollouts.texts, rollouts.completion_ids, rollouts.completion_mask,
                                          rollouts.truncated):
        kept = tokenizer.decode([t for t, m in zip(ids.tolist(), mask.tolist()) if m], skip_special_tokens=True)
        assert kept == text  # the loss mask covers exactly the text that was scored
        if ":" in text:
            stopped += 1
            assert text.endswith(":") and text.count(":") == 1 and not truncated
    assert stopped  # the worked solutions start "12+34:"


@pytest.mark.parametrize("overrides", [
    ["model.dtype=bfloat16"],
    ["model.gradient_checkpointing=true"],
    ["envs=[{id: thinkgym/Math-v0, kwargs: {generator: arithmetic, style: chat, prompt: '{question}'}}]"],
], ids=["bf16", "gradient-checkpointing", "chat-template"])
def test_variants_train_a_step(micro_model, tmp_path, overrides):
    out = tmp_path / "run"
    config = load_config(write_config(tmp_path / "c.yaml", micro_model, out, steps=1), overrides)
    train(config, progress=False, log=lambda s: None)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1 and row["grad_norm"] == row["grad_norm"]


@pytest.mark.parametrize("installed", [True, False], ids=["with-tensorboard", "without-tensorboard"])
def test_tensorboard_logs_when_installed_and_is_optional(tmp_path, monkeypatch, installed):
    from thinkgym.trainer.config import OutputConfig
    from thinkgym.trainer.logging import RunLogger

    if installed:
        pytest.importorskip("tensorboard")  # a dev dependency: installed by scripts/test.sh
    else:
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if absent
    logger = RunLogger(tmp_path, OutputConfig(), total=2, start=0, progress=False)
    for step in (1, 2):
        logger.log(step, {"step": step, "reward/mean": 0.5 * step, "length/mean": 10.0, "time/step": 1.0}, [])
    logger.close()
    assert [json.loads(line)["reward/mean"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0.5, 1.0]
    if installed:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
        assert [e.value for e in events.Scalars("reward/mean")] == [0.5, 1.0]
    else:
        assert not (tmp_path / "tensorboard").exists()


def flaky_sandbox(completion: str, question: str) -> float:
    """A code check whose sandbox fails (a stand-in for EAGAIN) on about a third of
    the completions: a verdict on nothing, flagged as an infrastructure error."""
    from thinkgym.rewards import Score

    if sandbox_fails(completion):
        return Score(0.0, "sandbox_error: BlockingIOError(11)", infra_error=True)
    return Score(float("7" in completion), "correct" if "7" in completion else "wrong_answer")


def sandbox_fails(completion: str) -> bool:
    return sum(map(ord, completion)) % 3 == 0


def flaky_env(**kwargs):
    from test_trainer import seven_env

    env = seven_env(**kwargs)
    env.rewards = [thinkgym.Reward("seven", flaky_sandbox)]
    return env


thinkgym.register("tests/FlakySandbox-v0", flaky_env)


def test_infrastructure_failures_are_dropped_not_learned_from(micro_model):
    batch = batch_for(micro_model, ["train.prompts_per_step=8", "train.group_size=2", "train.mini_batch_size=16",
                                    "train.micro_batch_size=8", "sampling.max_new_tokens=6", "sampling.temperature=2.0"],
                      envs=("tests/FlakySandbox-v0",))
    failed = batch.metrics["score/infra_errors"]
    assert 0 < failed < 16
    assert not any(map(sandbox_fails, batch.rollouts.texts))  # their groups were dropped whole
    assert batch.rewards.shape[0] % 2 == 0 and batch.rewards.shape[0] <= 16 - failed
    judged = [s for s in batch.samples if not sandbox_fails(s["completion"])]
    assert batch.metrics["reward/mean"] == pytest.approx(sum(s["reward"] for s in judged) / len(judged))


def test_a_weakened_sandbox_is_announced_only_for_envs_that_run_code(monkeypatch):
    import thinkgym.rewards.sandbox as sandbox
    from thinkgym.trainer.run import warn_if_sandbox_weakened

    monkeypatch.setattr(sandbox, "isolation_warning", lambda: "sandbox isolation is 'rlimits', weaker than 'namespaces'")
    lines = []
    warn_if_sandbox_weakened([thinkgym.make("tests/Seven-v0")], lines.append)
    assert lines == []
    warn_if_sandbox_weakened([thinkgym.make("thinkgym/Code-v0", source="humaneval")], lines.append)
    assert lines == ["WARNING: sandbox isolation is 'rlimits', weaker than 'namespaces'"]


def test_learning_rate_schedules_warm_up_then_hold_or_decay_to_zero():
    from thinkgym.trainer.accumulate import lr_factor

    assert [lr_factor(s, 3, 10, "constant") for s in (0, 1, 2, 3, 9)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert [lr_factor(s, 0, 4, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert lr_factor(0, 0, 4, "cosine") == 1.0 and lr_factor(2, 0, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(4, 0, 4, "cosine") == pytest.approx(0.0)
    with pytest.raises(Exception, match="lr_schedule"):
        load_config(None, ["train.lr_schedule=step"])
