"""Rollout engines: the cached engine agrees with HF generate, reports its own
log-probs, stops where asked, and trains with truncated importance sampling."""

import json

import pytest
import torch

from thinkgym.cli import main
from thinkgym.trainer.config import load_config
from thinkgym.trainer.loop import train
from thinkgym.trainer.policy import Sampling, load_model, token_logprobs
from thinkgym.trainer.rollout import CachedEngine, HFEngine

from test_trainer import write_config

PROMPTS = [f"Compute {10 + i} + {40 + 3 * i}." for i in range(6)]


@pytest.fixture(scope="module")
def policy(micro_model):
    return load_model(micro_model)


def test_cached_engine_matches_hf_generate_when_greedy(policy):
    sampling = Sampling(temperature=1e-3, max_new_tokens=24)
    torch.manual_seed(0)
    hf = HFEngine(*policy).generate(PROMPTS, 2, sampling)
    torch.manual_seed(0)
    cached = CachedEngine(*policy).generate(PROMPTS, 2, sampling)
    assert cached.texts == hf.texts
    assert torch.equal(cached.completion_mask, hf.completion_mask) and torch.equal(cached.truncated, hf.truncated)


def test_reported_logprobs_match_the_trainer(policy):
    model, tokenizer = policy
    torch.manual_seed(0)
    rollouts = CachedEngine(model, tokenizer).generate(PROMPTS, 4, Sampling(temperature=0.8, max_new_tokens=24))
    trainer, _ = token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                                rollouts.completion_mask, temperature=0.8)
    assert (trainer - rollouts.rollout_logprobs).abs().max() < 1e-4
    assert (rollouts.rollout_logprobs[rollouts.completion_mask == 0] == 0).all()


def test_stop_strings_and_top_p(policy):
    torch.manual_seed(0)
    rollouts = CachedEngine(*policy).generate(PROMPTS[:2], 3, Sampling(max_new_tokens=40, top_p=0.9, stop=(":",)))
    for text, truncated in zip(rollouts.texts, rollouts.truncated):
        assert (text.endswith(":") and text.count(":") == 1 and not truncated) or ":" not in text


def test_training_with_the_cached_engine_and_tis(micro_model, tmp_path):
    out = tmp_path / "run"
    config = load_config(write_config(tmp_path / "c.yaml", micro_model, out, steps=1),
                         ["sampling.engine=cached", "sampling.tis_cap=2.0"])
    train(config, progress=False, log=lambda s: None)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 <= row["rollout_logprob_gap/mean"] <= row["rollout_logprob_gap/max"] < 1e-3


def test_tis_needs_an_engine_that_reports_logprobs(capsys):
    assert main(["train", "--dry-run", "--set", "sampling.tis_cap=2"]) == 2
    assert "needs an engine that reports its log-probs" in capsys.readouterr().err
