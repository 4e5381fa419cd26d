"""One step off-policy (``train.off_policy_steps: 1``): step s+1's rollouts are
sampled in a thread, from the engine's copy of step s's weights, while step s
trains. Its config errors, the copy's semantics, and runs that learn, log their
staleness, resume and run under two processes."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkgym.trainer.config import load_config
from thinkgym.trainer.engines import SnapshotEngine, StaticCacheEngine, holds_own_weights
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.run import train
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.typed_config import ConfigError

from test_trainer import kill_then_resume, write_config

OFF_POLICY = ["train.off_policy_steps=1", "sampling.tis_cap=2.0"]


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("overrides, message", [
    (["train.off_policy_steps=2"], "train.off_policy_steps must be 0 (on-policy) or 1, got 2"),
    (["train.off_policy_steps=1"], "train.off_policy_steps: 1 needs sampling.tis_cap"),
    ([*OFF_POLICY, "algorithm.preset=ppo"], "algorithm.objective ppo samples on-policy"),
    ([*OFF_POLICY, "sampling.engine=hf"], "sampling.tis_cap needs an engine that reports its log-probs"),
    ([*OFF_POLICY, "sampling.engine=vllm", "sampling.vllm.sleep=true"], "with train.off_policy_steps: 1 the engine "
                                                                         "samples then"),
])
def test_bad_off_policy_settings_are_named(micro_model, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write_config(tmp_path / "c.yaml", micro_model, tmp_path / "out"), overrides)


def sampled_logprobs(model, rollouts):
    return token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                          rollouts.completion_mask, 1.0)[0] * rollouts.completion_mask


def test_the_copy_samples_the_weights_it_last_loaded(micro_model):
    """The policy trains while the copy samples: the copy's log-probs stay those of the
    weights it loaded, until the next ``load_weights``."""
    model = AutoModelForCausalLM.from_pretrained(micro_model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(micro_model)
    engine = SnapshotEngine(model, lambda weights: StaticCacheEngine(weights, tokenizer))
    assert holds_own_weights(engine) and engine.reports_logprobs and engine.copy is not model
    sampling = Sampling(max_new_tokens=12)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # the policy moves; the copy does not
    assert engine.policy_stepped() and engine.lag == 1
    stale = engine.generate(["12+34=", "7-5="], 4, sampling)
    original = AutoModelForCausalLM.from_pretrained(micro_model, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(stale.rollout_logprobs, sampled_logprobs(original, stale), atol=1e-4)
        assert not torch.allclose(stale.rollout_logprobs, sampled_logprobs(model, stale), atol=1e-2)
    engine.load_weights(model)
    assert engine.lag == 0
    fresh = engine.generate(["12+34=", "7-5="], 4, sampling)
    with torch.no_grad():
        assert torch.allclose(fresh.rollout_logprobs, sampled_logprobs(model, fresh), atol=1e-4)


def test_an_off_policy_run_learns_one_step_stale(micro_model, tmp_path):
    """tests/Seven-v0 rewards a completion with a 7 in it; the micro model writes one about a third of the time."""
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", micro_model, out, steps=12, prompts_per_step=4, group_size=8,
                        mini_batch_size=32, micro_batch_size=16, lr=3e-3)
    config = load_config(path, [*OFF_POLICY, "envs=[{id: tests/Seven-v0}]", "sampling.max_new_tokens=8",
                                "output.checkpoint_every=100"])
    train(config, progress=False, log=lambda line: None)  # in this process: tests/Seven-v0 is registered here
    metrics = rows(out)
    first, last = (sum(r["reward/seven"] for r in part) / 3 for part in (metrics[:3], metrics[-3:]))
    assert last > first + 0.2, (first, last)
    # The first step samples on-policy; every later one trains on rollouts of the weights before
    # the previous update, and the gap between the two log-probs shows that update.
    assert [r["rollout/staleness"] for r in metrics] == [0] + [1] * 11
    assert metrics[0]["rollout_logprob_gap/max"] < 1e-4
    assert all(r["rollout_logprob_gap/max"] > 1e-3 for r in metrics[1:])
    assert all("time/rollout_wait" in r and "time/weight_sync" in r for r in metrics)


def off_policy_config(path, model, out, **train):
    config = yaml.safe_load(open(write_config(path, model, out, **train)))
    config["train"]["off_policy_steps"], config["sampling"]["tis_cap"] = 1, 2.0
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_sigkill_then_resume_samples_the_first_step_after_it_on_policy(micro_model, tmp_path):
    out = tmp_path / "killed"
    kill_then_resume(off_policy_config(tmp_path / "c.yaml", micro_model, out, steps=5), out, 5)
    metrics = rows(out)
    assert [r["step"] for r in metrics] == [1, 2, 3, 4, 5]
    # The rollouts in flight die with the process: the resumed run samples its first step anew, on-policy.
    resumed_at = next(i for i, r in enumerate(metrics) if i and r["rollout/staleness"] == 0)
    assert 2 <= resumed_at < 5 and all(r["rollout/staleness"] == 1 for r in metrics[resumed_at + 1:])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_nproc_2_samples_off_policy_on_each_rank(micro_model, tmp_path, strategy):
    out = tmp_path / "run"
    config = off_policy_config(tmp_path / "c.yaml", micro_model, out, steps=3)
    done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--nproc", "2", "--config", config,
                           f"--set=train.strategy={strategy}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = rows(out)
    assert [r["rollout/staleness"] for r in metrics] == [0, 1, 1]
    # Each rank's copy loads whole weights (gathered under FSDP): a shard would show in the gap.
    assert all(r["rollout_logprob_gap/max"] < 0.5 for r in metrics)
