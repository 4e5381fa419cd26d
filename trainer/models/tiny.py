"""thinkgym's tiny default model: a small Llama pretrained offline on worked arithmetic.

The default ``thinkgym train`` run needs a policy that runs on a laptop CPU with
no downloads, and that RL can visibly improve. This module builds one: a
0.65M-parameter Llama with a character-level tokenizer
(:mod:`thinkgym.trainer.models.tiny_tokenizer`), fine-tuned from random weights
by the SFT objective (a ``thinkgym train`` run, :func:`pretraining_config`) on
synthetic R1-Zero-style traces for :data:`TINY_ENV`::

    Compute 57 + 68.<think>57+68: 7+8=15, 5+6+1=12</think><answer>125</answer></s>

Its traces are imperfect on purpose (:data:`ANSWER_NOISE`): the model learns the
format and the column method, but its answers stay uncertain, so sampled at
temperature 1 it is right about a quarter of the time (27.5% on 200 held-out
tasks) while its greedy answer is mostly right (85%). That gap is what GRPO
closes by sharpening the policy.

The result is a standard Hugging Face checkpoint (``config.json``,
``model.safetensors``, ``generation_config.json``, tokenizer files) that
``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` load, TRL included.
:func:`tiny_model_path` builds it once into the cache and reuses it after.

Held-out split: pretraining draws tasks from :data:`TINY_ENV` with
``seed=PRETRAIN_SEED`` and skips every question among the first
:data:`HELD_OUT_TASKS` tasks of ``seed=EVAL_SEED`` (ids ``arithmetic-0`` ..
``arithmetic-999``), so evaluation on those ids is on unseen questions.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import thinkgym
from thinkgym.trainer.checkpoint import STATE_FILE
from thinkgym.trainer.models.builtin import BUILTIN_MODELS, cached_model
from thinkgym.trainer.models.tiny_tasks import EVAL_SEED, HELD_OUT_TASKS, PRETRAIN_SEED, TINY_ENV
from thinkgym.trainer.models.tiny_tokenizer import build_tokenizer

CACHE_NAME = BUILTIN_MODELS["tiny"].folder
"""The cache folder name (change it in :data:`BUILTIN_MODELS` whenever the recipe below changes)."""
STEPS = 300
"""Pretraining steps of the default build."""
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WARMUP_STEPS = 20
ANSWER_NOISE = 0.6
"""Share of pretraining traces whose final answer is a near miss (see :func:`noisy_answer`)."""

MODEL_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}

_QUESTION = re.compile(r"Compute (\d+) ([+-]) (\d+)\.")


def make_env(seed: int) -> thinkgym.TextEnv:
    """:data:`TINY_ENV` with the given generator seed."""
    return thinkgym.make(TINY_ENV["id"], seed=seed, **{k: v for k, v in TINY_ENV.items() if k != "id"})


def worked_solution(question: str, answer: int | None = None) -> str:
    """The completion the tiny model is pretrained on for ``question`` (``"Compute a + b."``
    or ``"Compute a - b."``): a column-by-column computation in ``<think>``, then
    the result (or ``answer``, when given) in ``<answer>``. A negative difference
    is computed as ``-(b - a)``."""
    match = _QUESTION.fullmatch(question)
    if match is None:
        raise ValueError(f"not a two-term + or - question: {question!r}")
    a, op, b = int(match[1]), match[2], int(match[3])
    if op == "+":
        think = f"{a}+{b}: {_add_columns(a, b)}"
    elif a >= b:
        think = f"{a}-{b}: {_subtract_columns(a, b)}"
    else:
        think = f"{a}-{b}=-({b}-{a}). {b}-{a}: {_subtract_columns(b, a)}"
    result = a + b if op == "+" else a - b
    return f"<think>{think}</think><answer>{result if answer is None else answer}</answer>"


def noisy_answer(result: int, rng: random.Random) -> int:
    """The answer a pretraining trace ends with: with probability :data:`ANSWER_NOISE`
    a near miss (result +-1 or +-10, each equally likely), else the result.

    This is the deliberate imperfection RL then removes: the model learns to work
    the sum out, but not to trust its own working, so sampled at temperature 1 it
    often writes a near miss after a correct computation. The true result stays
    the single most likely answer, which is the signal group-relative RL amplifies."""
    if rng.random() >= ANSWER_NOISE:
        return result
    return result + rng.choice((1, -1, 10, -10))


def _digits(n: int, width: int) -> list[int]:
    """The decimal digits of ``n``, ones first, zero-padded to ``width``."""
    return [int(d) for d in reversed(str(n).zfill(width))]


def _add_columns(a: int, b: int) -> str:
    """Column addition, ones first, with the carry written as ``+1``: ``7+8=15, 5+6+1=12``."""
    width = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        total = x + y + carry
        steps.append(f"{x}+{y}{'+1' if carry else ''}={total}")
        carry = total // 10
    return ", ".join(steps)


def _subtract_columns(a: int, b: int) -> str:
    """Column subtraction of ``b <= a``, ones first: a borrowed ten is written in
    front of the digit (``12-8=4``), and repaid as ``-1`` in the next column."""
    width = len(str(a))
    steps, borrow = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        top = x + 10 if x - borrow < y else x
        steps.append(f"{top}{'-1' if borrow else ''}-{y}={top - borrow - y}")
        borrow = int(top > x)
    return ", ".join(steps)


def held_out_questions() -> set[str]:
    """The questions of the evaluation tasks (never pretrained on)."""
    env = make_env(EVAL_SEED)
    return {env.tasks[i]["question"] for i in range(HELD_OUT_TASKS)}


def pretraining_rows(count: int) -> list[dict[str, str]]:
    """``count`` demonstrations (``prompt``, ``completion``: a worked solution,
    its answer noisy) from the ``PRETRAIN_SEED`` tasks in task order, skipping
    held-out questions."""
    env, excluded = make_env(PRETRAIN_SEED), held_out_questions()
    rng = random.Random(PRETRAIN_SEED)
    rows, i = [], 0
    while len(rows) < count:
        task = env.tasks[i]
        i += 1
        if task["question"] in excluded:
            continue
        answer = noisy_answer(int(task["answer"]), rng)
        rows.append({"prompt": env.prompt_of(task), "completion": worked_solution(task["question"], answer)})
    return rows


def new_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama (:data:`MODEL_CONFIG`) sized to ``tokenizer``;
    the global torch RNG is left as it was."""
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **MODEL_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """Write a standard Hugging Face checkpoint: model, generation config and tokenizer."""
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=128)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    config_file = out_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # the name transformers 4 and 5 both load
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def pretraining_config(model: Path, data: Path, out: Path, seed: int, steps: int, threads: int) -> dict:
    """The ``thinkgym train`` config that pretrains the tiny model: the SFT
    objective on :func:`pretraining_rows`, evaluated on the held-out tasks."""
    env = {k: v for k, v in TINY_ENV.items() if k != "id"}
    return {
        "model": {"path": str(model)},
        "envs": [{"id": TINY_ENV["id"], "kwargs": {**env, "seed": PRETRAIN_SEED}, "eval_kwargs": {"seed": EVAL_SEED}}],
        "algorithm": {"objective": "sft"},
        "data": {"path": str(data), "batch_size": BATCH_SIZE},
        "train": {"steps": steps, "mini_batch_size": BATCH_SIZE, "micro_batch_size": BATCH_SIZE, "lr": LEARNING_RATE,
                  "warmup_steps": WARMUP_STEPS, "lr_schedule": "linear", "weight_decay": 0.01, "seed": seed,
                  "device": "cpu", "cpu_threads": threads, "score_workers": 1},
        "output": {"dir": str(out), "checkpoint_every": steps, "samples_every": steps},
    }


# Variables torchrun sets: the build is a run of its own, never a rank of the caller's group.
_LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                       "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, steps: int = STEPS,
                     log: Callable[[str], None] = print) -> Path:
    """Build the tiny model into ``out_dir`` (created if needed) and return it.

    The build is a ``thinkgym train`` run of the SFT objective (in a process of
    its own, with its progress bar on stderr) from a randomly initialised model,
    whose final weights and tokenizer are copied out. Deterministic given
    ``seed``, ``steps`` and the machine's torch; the default build takes about
    two minutes on two CPU cores. Tests pass a few ``steps`` for a quick micro
    build. The caller's process state (threads, random states) is untouched.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="thinkgym-tiny-build-") as tmp:
        tmp = Path(tmp)
        tokenizer = build_tokenizer()
        save(new_model(tokenizer, seed), tokenizer, tmp / "init")
        data = tmp / "pretraining.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in pretraining_rows(steps * BATCH_SIZE)))
        config = tmp / "pretrain.yaml"
        threads = min(torch.get_num_threads(), os.cpu_count() or 1)
        config.write_text(json.dumps(pretraining_config(tmp / "init", data, tmp / "run", seed, steps, threads)))
        environment = {k: v for k, v in os.environ.items()
                       if k not in _LAUNCHER_VARIABLES and not k.startswith("TORCHELASTIC_")}
        done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--config", str(config)],
                              env=environment, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"building the tiny model failed (exit code {done.returncode}):\n{done.stdout[-2000:]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for file in (tmp / "run" / "checkpoint").iterdir():
            if file.name != STATE_FILE:
                shutil.copy2(file, out_dir / file.name)
    accuracy = [line for line in done.stdout.splitlines() if line.startswith("held-out accuracy:")]
    log(f"built the tiny model in {out_dir} in {time.perf_counter() - started:.0f} s ({''.join(accuracy)})")
    return out_dir


def tiny_model_path(*, steps: int = STEPS, log: Callable[[str], None] = print) -> Path:
    """The tiny model's folder, ``<cache_root()>/models/tiny-v3``, built on first use."""
    return cached_model(CACHE_NAME, lambda folder: build_tiny_model(folder, steps=steps, log=log), log)
