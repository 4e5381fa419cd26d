"""The tiny default model: its tokenizer, traces, checkpoint format, reproducibility and cache.

Builds are "micro" (a couple of optimizer steps) so the file runs in seconds;
the full build's accuracy is measured by benchmarks/build_tiny_model.py.
"""

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkgym.rewards.math_answer import math_reward
from thinkgym.trainer.models import tiny as tiny_model
from thinkgym.trainer.checkpoint import rng_state
from thinkgym.trainer.models.tiny import (
    CACHE_NAME, EVAL_SEED, HELD_OUT_TASKS, TINY_ENV, build_tiny_model, held_out_questions, make_env,
    pretraining_rows, tiny_model_path, worked_solution)
from thinkgym.trainer.models.tiny_tokenizer import ALPHABET, TAGS, build_tokenizer

MICRO_STEPS = 2


def quiet(_message: str) -> None:
    """A build log that prints nothing."""


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("micro"), seed=0, steps=MICRO_STEPS, log=quiet)


# -- tokenizer --------------------------------------------------------------------------
def test_tokenizer_round_trips_any_text_over_its_alphabet(micro):
    tokenizer = AutoTokenizer.from_pretrained(micro)
    rng = random.Random(0)
    pieces = list(ALPHABET) + list(TAGS) + ["<think", "answer>", "  ", "\n\n"]
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.encode(" Compute  57 + 68. ")) == " Compute  57 + 68. "


def test_tags_are_single_tokens_and_characters_are_tokens(micro):
    tokenizer = AutoTokenizer.from_pretrained(micro)
    for tag in TAGS:
        assert len(tokenizer.encode(tag)) == 1
    assert len(tokenizer.encode("Compute 57 + 68.")) == len("Compute 57 + 68.")
    assert tokenizer.encode("é") == [tokenizer.unk_token_id]
    completion = "<think>1+2=3</think><answer>3</answer>"
    ids = tokenizer.encode(completion) + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == completion  # tags survive skip_special_tokens


def test_chat_template_renders_a_user_message_as_the_plain_prompt(micro):
    tokenizer = AutoTokenizer.from_pretrained(micro)
    user = [{"role": "user", "content": "Compute 57 + 68."}]
    assert tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == "Compute 57 + 68."
    turns = [{"role": "system", "content": "Be brief."}, *user, {"role": "assistant", "content": "<answer>125</answer>"}]
    assert tokenizer.apply_chat_template(turns, tokenize=False) == "Be brief.\nCompute 57 + 68.<answer>125</answer></s>"


def test_the_tokenizer_is_built_the_same_every_time():
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()


# -- traces ----------------------------------------------------------------------------
@pytest.mark.parametrize("question, completion", [
    ("Compute 57 + 68.", "<think>57+68: 7+8=15, 5+6+1=12</think><answer>125</answer>"),
    ("Compute 52 - 38.", "<think>52-38: 12-8=4, 5-1-3=1</think><answer>14</answer>"),
    ("Compute 90 - 15.", "<think>90-15: 10-5=5, 9-1-1=7</think><answer>75</answer>"),
    ("Compute 23 - 45.", "<think>23-45=-(45-23). 45-23: 5-3=2, 4-2=2</think><answer>-22</answer>"),
    ("Compute 57 - 54.", "<think>57-54: 7-4=3, 5-5=0</think><answer>3</answer>"),
])
def test_worked_solutions_show_the_column_method(question, completion):
    assert worked_solution(question) == completion


def test_worked_solutions_score_correct_in_the_environment():
    env = make_env(EVAL_SEED)
    tasks = [env.tasks[i] for i in range(300)]
    completions = [worked_solution(t["question"]) for t in tasks]
    assert all(c.endswith(f"<answer>{t['answer']}</answer>") for c, t in zip(completions, tasks))
    assert all(s.reward == 1.0 for s in env.score_many(completions[:20], tasks[:20], workers=1))
    assert math_reward(completions[0], tasks[0]["answer"]) == 1.0


def test_worked_solution_rejects_other_questions():
    with pytest.raises(ValueError, match="not a two-term"):
        worked_solution("Compute 2 × 3.")


def test_pretraining_never_sees_a_held_out_question():
    held_out = held_out_questions()
    assert len(held_out) > 0.9 * HELD_OUT_TASKS  # the question space is large enough for few repeats
    prompts = {row["prompt"] for row in pretraining_rows(3000)}
    assert prompts and not prompts & held_out


def test_tiny_env_makes_the_environment():
    env = make_env(EVAL_SEED)
    assert env.prompt_of(env.tasks[0]) == env.tasks[0]["question"]
    assert TINY_ENV["style"] == "text" and TINY_ENV["id"] == "thinkgym/Math-v0"


# -- checkpoint ------------------------------------------------------------------------
def test_the_build_is_a_standard_small_checkpoint(micro):
    names = {p.name for p in micro.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sum(p.stat().st_size for p in micro.iterdir()) < 10 * 2**20
    tokenizer = AutoTokenizer.from_pretrained(micro)
    model = AutoModelForCausalLM.from_pretrained(micro)
    assert model.config.vocab_size == len(tokenizer)
    generation = json.loads((micro / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eos_token_id and generation["pad_token_id"] == tokenizer.pad_token_id


def test_the_model_generates_text(micro):
    tokenizer = AutoTokenizer.from_pretrained(micro)
    model = AutoModelForCausalLM.from_pretrained(micro)
    batch = tokenizer(["Compute 57 + 68.", "Compute 23 - 45."], return_tensors="pt")
    torch.manual_seed(0)
    output = model.generate(**batch, do_sample=True, max_new_tokens=12)
    assert output.shape[1] > batch["input_ids"].shape[1]
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts) and any(texts)


def test_the_build_is_reproducible(micro, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0, steps=MICRO_STEPS, log=quiet)
    other = build_tiny_model(tmp_path / "other", seed=1, steps=MICRO_STEPS, log=quiet)
    first, second, third = (load_file(d / "model.safetensors") for d in (micro, again, other))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)
    assert (micro / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()



def test_the_build_leaves_the_random_states_alone(tmp_path):
    """A run seeds, then resolves its model: building it on a cold cache must draw
    from no global RNG, or the run samples differently than on a warm cache."""
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    before = rng_state()
    build_tiny_model(tmp_path, steps=1, log=quiet)
    after = rng_state()
    assert after["python"] == before["python"]
    assert all(np.array_equal(a, b) for a, b in zip(after["numpy"], before["numpy"]))
    assert torch.equal(after["torch"], before["torch"])

# -- cache -----------------------------------------------------------------------------
def test_the_cache_builds_once_atomically_past_a_stale_partial_build(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path))
    models = tmp_path / "models"
    stale = models / f".{CACHE_NAME}.tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{half a fi")
    messages = []
    path = tiny_model_path(steps=MICRO_STEPS, log=messages.append)
    assert path == models / CACHE_NAME and (path / "model.safetensors").is_file()
    AutoModelForCausalLM.from_pretrained(path)
    assert {p.name for p in models.iterdir()} == {CACHE_NAME, stale.name}  # our staging folder is gone
    messages.clear()
    assert tiny_model_path(steps=MICRO_STEPS, log=messages.append) == path
    assert messages == []  # reused, not rebuilt


def test_a_failed_build_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path))

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(tiny_model, "build_tiny_model", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        tiny_model_path(log=quiet)
    assert list((tmp_path / "models").iterdir()) == []


def test_pretraining_answers_are_noisy_but_right_most_often():
    import collections
    import random

    from thinkgym.trainer.models.tiny import ANSWER_NOISE, noisy_answer

    rng = random.Random(0)
    counts = collections.Counter(noisy_answer(50, rng) - 50 for _ in range(20_000))
    assert set(counts) == {0, 1, -1, 10, -10}
    assert counts[0] / 20_000 == pytest.approx(1 - ANSWER_NOISE, abs=0.02)
    assert counts.most_common(1)[0][0] == 0  # the true result is the plurality: what RL sharpens
