"""Rollout engines: the static-cache engine agrees with HF generate, reports its own
log-probs, stops where asked, and trains with truncated importance sampling."""

import json

import pytest
import torch

from thinkgym.cli import main
from thinkgym.trainer.config import load_config
from thinkgym.trainer.run import train
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.engines import EngineFallbackWarning, make_engine
from thinkgym.trainer.engines.hf import HFEngine
from thinkgym.trainer.engines.static import StaticCacheEngine

from test_trainer import write_config

PROMPTS = [f"Compute {10 + i} + {40 + 3 * i}." for i in range(6)]


@pytest.fixture(scope="module")
def policy(micro_model):
    return load_model(micro_model)


def test_static_engine_matches_hf_generate_when_greedy(policy):
    """At temperature 1e-3 both engines take the model's argmax, except where two
    logits lie within a few thousandths (this micro model has such near-ties):
    there the draw is a real coin flip, which the engines' different random
    streams settle differently on some torch versions. So each engine is checked
    against the model's own logits, and the texts against each other."""
    model, tokenizer = policy
    sampling = Sampling(temperature=1e-3, max_new_tokens=24)
    outputs = {}
    for engine in (HFEngine(model, tokenizer), StaticCacheEngine(model, tokenizer)):
        torch.manual_seed(0)
        r = outputs[type(engine)] = engine.generate(PROMPTS, 2, sampling)
        ids = torch.cat([r.prompt_ids, r.completion_ids], 1)
        with torch.no_grad():
            logits = model(ids, attention_mask=torch.cat([r.prompt_mask, r.completion_mask], 1)).logits.float()
        logits = logits[:, r.prompt_ids.shape[1] - 1:-1]
        chosen = logits.gather(-1, r.completion_ids[..., None]).squeeze(-1)
        margin = (logits.max(-1).values - chosen)[r.completion_mask == 1]
        assert margin.max() < 1e-2  # a token 0.01 below the argmax has odds e^-10 at this temperature
    static, hf = outputs[StaticCacheEngine], outputs[HFEngine]
    same = sum(a == b for a, b in zip(static.texts, hf.texts))
    assert same >= len(PROMPTS) * 2 - 2  # equal but for the rare tie broken the other way


def test_reported_logprobs_match_the_trainer(policy):
    model, tokenizer = policy
    torch.manual_seed(0)
    rollouts = StaticCacheEngine(model, tokenizer).generate(PROMPTS, 4, Sampling(temperature=0.8, max_new_tokens=24))
    trainer, _ = token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                                rollouts.completion_mask, temperature=0.8)
    assert (trainer - rollouts.rollout_logprobs).abs().max() < 1e-4
    assert (rollouts.rollout_logprobs[rollouts.completion_mask == 0] == 0).all()


def test_stop_strings_and_top_p(policy):
    torch.manual_seed(0)
    rollouts = StaticCacheEngine(*policy).generate(PROMPTS[:2], 3, Sampling(max_new_tokens=40, top_p=0.9, stop=(":",)))
    for text, truncated in zip(rollouts.texts, rollouts.truncated):
        assert (text.endswith(":") and text.count(":") == 1 and not truncated) or ":" not in text


def test_training_with_the_static_engine_and_tis(micro_model, tmp_path):
    out = tmp_path / "run"
    config = load_config(write_config(tmp_path / "c.yaml", micro_model, out, steps=1),
                         ["sampling.engine=static", "sampling.tis_cap=2.0"])
    train(config, progress=False, log=lambda s: None)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 <= row["rollout_logprob_gap/mean"] <= row["rollout_logprob_gap/max"] < 1e-3


def test_tis_needs_an_engine_that_reports_logprobs(capsys):
    assert main(["train", "--dry-run", "--set", "sampling.tis_cap=2", "--set", "sampling.engine=hf"]) == 2
    assert "needs an engine that reports its log-probs" in capsys.readouterr().err


def random_decoder(kind: str, **overrides):
    """A random-init decoder of another supported family, with GQA (and Qwen2's
    q/k/v biases, Qwen3's q/k norms), sized for the tiny tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from thinkgym.trainer.models.tiny_tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **overrides)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral"])
def test_static_engine_on_other_families(kind):
    model, tokenizer = random_decoder(kind)
    torch.manual_seed(0)
    rollouts = StaticCacheEngine(model, tokenizer).generate(PROMPTS, 3, Sampling(temperature=0.7, max_new_tokens=16))
    trainer, _ = token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                                rollouts.completion_mask, temperature=0.7)
    assert rollouts.completion_mask.sum() > 0
    assert (trainer - rollouts.rollout_logprobs).abs().max() < 1e-4  # the engine samples the model's distribution


@pytest.mark.parametrize("kind", StaticCacheEngine.SUPPORTED)
def test_auto_picks_the_static_engine_for_every_family_it_claims(kind, recwarn):
    model, tokenizer = random_decoder(kind)
    assert type(make_engine("auto", model, tokenizer)) is StaticCacheEngine
    assert not [w for w in recwarn if issubclass(w.category, EngineFallbackWarning)]


def test_auto_falls_back_loudly_and_says_why():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.warns(EngineFallbackWarning, match="falling back to HF generate.*slower.*not 'gpt2'"):
        assert type(make_engine("auto", GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), None)) is HFEngine
    model, tokenizer = random_decoder("llama")

    class IgnoresTheCache(torch.nn.Module):  # a layer convention the engine cannot drive exactly
        def __init__(self, config=None, layer_idx=0):
            super().__init__()

        def forward(self, hidden, *args, **kwargs):
            return hidden

    model.get_decoder().layers[0] = IgnoresTheCache()
    with pytest.warns(EngineFallbackWarning, match="do not write their keys and values through Cache.update.*report"):
        assert type(make_engine("auto", model, tokenizer)) is HFEngine
    with pytest.raises(ValueError, match="Cache.update; use sampling.engine=hf"):
        StaticCacheEngine(model, tokenizer)


def test_static_engine_refuses_what_it_cannot_run_exactly():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ValueError, match="supports llama, mistral, qwen2, qwen3 models, not 'gpt2'"):
        StaticCacheEngine(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), None)
    model, tokenizer = random_decoder("mistral", sliding_window=16)
    with pytest.raises(ValueError, match="sliding-window attention"):
        StaticCacheEngine(model, tokenizer).generate(PROMPTS, 1, Sampling(max_new_tokens=16))


def test_sampling_draws_from_the_distribution_and_reports_its_logprob():
    from thinkgym.trainer.engines.static import _sample, _two_stage_multinomial

    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.0, 0.2, 0.1, 0.0, 0.05, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0])  # 4 ids a block
    draws = _two_stage_multinomial(probs.repeat(40_000, 1).view(40_000, 3, 4))
    frequency = torch.bincount(draws, minlength=12).float() / len(draws)
    assert (frequency[probs == 0] == 0).all()
    assert (frequency - probs).abs().max() < 0.01  # 4 standard errors at 40k draws

    logits = torch.randn(3, 1001)  # a vocabulary that needs a padded last block
    for sampling in (Sampling(temperature=0.7), Sampling(top_p=0.5)):
        token, logprob = _sample(logits, sampling)
        expected = torch.log_softmax(logits / sampling.temperature, -1)
        if sampling.top_p < 1:
            nucleus = expected.exp().sort(-1, descending=True).values.cumsum(-1)
            expected = expected - torch.log(nucleus.gather(-1, (nucleus < 0.5).sum(-1, keepdim=True)))
        assert torch.allclose(logprob, expected.gather(-1, token[:, None]).squeeze(1), atol=1e-5)


def test_tis_weighs_each_token_by_the_capped_trainer_to_rollout_ratio(micro_model):
    from thinkgym.trainer import distributed
    from thinkgym.trainer.collect import Batch, batch_logprobs
    from thinkgym.trainer.policy_update import update_policy
    from thinkgym.trainer.engines.rollouts import Rollouts

    model, tokenizer = load_model(micro_model)
    torch.manual_seed(0)
    r = StaticCacheEngine(model, tokenizer).generate(PROMPTS[:4], 2, Sampling(max_new_tokens=12))
    mask = r.completion_mask
    rollout = (r.rollout_logprobs + 0.3 * torch.randn(mask.shape)) * mask  # numerics far enough off for the cap to bite
    drift = batch_logprobs(model, r, 8, 1.0) - rollout
    assert (drift.exp()[mask == 1] > 1.5).any()
    advantages = torch.randn(8)
    common = ["train.prompts_per_step=4", "train.group_size=2", "train.mini_batch_size=8", "train.micro_batch_size=4",
              "sampling.max_new_tokens=12", "sampling.engine=static"]
    runs = {"tis": (load_config(None, common + ["sampling.tis_cap=1.5"]), rollout, advantages),
            "by hand": (load_config(None, common), None, advantages[:, None] * drift.exp().clamp(max=1.5))}
    results = {}
    for name, (config, rollout_logprobs, adv) in runs.items():
        policy = load_model(micro_model)[0]
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
        batch = Batch(Rollouts(**{**vars(r), "rollout_logprobs": rollout_logprobs}), torch.zeros(8), mask, {}, [], adv)
        stats = update_policy(distributed.wrap(policy, "cpu"), optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                       batch, config, torch.Generator().manual_seed(0))
        results[name] = (stats, list(policy.parameters()))
    (stats, params), (_, by_hand) = results["tis"], results["by hand"]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params, by_hand))
    assert stats["rollout_logprob_gap/max"] == pytest.approx(drift.abs()[mask == 1].max().item(), rel=1e-5)
    assert stats["rollout_logprob_gap/mean"] == pytest.approx(drift.abs()[mask == 1].mean().item(), rel=1e-5)


def test_rollouts_are_as_wide_as_the_longest_completion(policy):
    torch.manual_seed(0)
    rollouts = StaticCacheEngine(*policy).generate(PROMPTS, 2, Sampling(max_new_tokens=200))
    assert not rollouts.truncated.any()  # every completion ended before the limit
    assert rollouts.completion_ids.shape[1] == rollouts.completion_mask.sum(1).max() < 200
