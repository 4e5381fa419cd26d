"""thinkgym's tiny default model: a small Llama pretrained offline on worked arithmetic.

The default ``thinkgym train`` run needs a policy that runs on a laptop CPU with
no downloads, and that RL can visibly improve. This module builds one: a
0.65M-parameter Llama with a character-level tokenizer
(:mod:`thinkgym.trainer.models.tiny_tokenizer`), trained by next-token prediction on
synthetic R1-Zero-style traces for :data:`TINY_ENV`::

    Compute 57 + 68.<think>57+68: 7+8=15, 5+6+1=12</think><answer>125</answer></s>

Training stops early on purpose: the model has learnt the format and, mostly,
the column method, but its next-token distributions are still broad, so sampled
at temperature 1 it is right about a quarter of the time (25% on 200 held-out
tasks) while its greedy answer is right more than half the time (58%). That gap
is what GRPO closes by sharpening the policy.

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
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import thinkgym
from thinkgym.trainer.checkpoint import rng_state, set_rng_state
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


def pretraining_examples(tokenizer: PreTrainedTokenizerFast, count: int) -> list[tuple[list[int], list[int]]]:
    """``count`` (prompt ids, completion ids + EOS) pairs from the ``PRETRAIN_SEED``
    tasks, in task order, skipping held-out questions."""
    env, excluded = make_env(PRETRAIN_SEED), held_out_questions()
    rng = random.Random(PRETRAIN_SEED)
    examples, i = [], 0
    while len(examples) < count:
        task = env.tasks[i]
        i += 1
        if task["question"] in excluded:
            continue
        prompt = tokenizer.encode(env.prompt_of(task))
        answer = noisy_answer(int(task["answer"]), rng)
        completion = tokenizer.encode(worked_solution(task["question"], answer)) + [tokenizer.eos_token_id]
        examples.append((prompt, completion))
    return examples


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)``; labels are -100 on
    prompt and padding, so the loss is on completions (and their EOS) only."""
    length = max(len(p) + len(c) for p, c in examples)
    input_ids = torch.full((len(examples), length), pad_id)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), -100)
    for row, (prompt, completion) in enumerate(examples):
        n, m = len(prompt), len(completion)
        input_ids[row, : n + m] = torch.tensor(prompt + completion)
        attention_mask[row, : n + m] = 1
        labels[row, n : n + m] = torch.tensor(completion)
    return input_ids, attention_mask, labels


def learning_rate(step: int, steps: int) -> float:
    """Linear warmup over ``WARMUP_STEPS``, then linear decay to a tenth at the last step."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return LEARNING_RATE * (1 - 0.9 * progress)


def new_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama (:data:`MODEL_CONFIG`) sized to ``tokenizer``."""
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **MODEL_CONFIG)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def pretrain(model: LlamaForCausalLM, examples: list, pad_id: int, steps: int, seed: int) -> None:
    """``steps`` AdamW steps of next-token loss over ``examples`` in a seeded
    shuffled order; a progress bar on stderr shows the loss, tokens/s and the time left."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    model.train()
    tokens, started = 0, time.perf_counter()
    with tqdm(total=steps, desc="building the tiny model", unit="step", dynamic_ncols=True) as bar:
        for step in range(steps):
            batch = [examples[order[(step * BATCH_SIZE + k) % len(order)]] for k in range(BATCH_SIZE)]
            input_ids, attention_mask, labels = collate(batch, pad_id)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps)
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            tokens += int(attention_mask.sum())
            bar.set_postfix({"loss": f"{loss.item():.3f}", "tok/s": f"{tokens / (time.perf_counter() - started):.0f}"},
                            refresh=False)
            bar.update()
    model.eval()


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


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, steps: int = STEPS,
                     log: Callable[[str], None] = print) -> Path:
    """Build the tiny model into ``out_dir`` (created if needed) and return it.

    Deterministic given ``seed`` and ``steps``; the default build takes about two
    minutes on two idle CPU cores. Tests pass a few ``steps`` for a quick micro build.
    The build leaves the caller's global state as it found it: torch's thread
    count and determinism flag, and the Python, NumPy and torch random states
    (so a run seeded before the model is built samples alike on a cold and a
    warm cache).
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    threads, rng = torch.get_num_threads(), rng_state()
    torch.set_num_threads(min(threads, os.cpu_count() or 1))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        tokenizer = build_tokenizer()
        examples = pretraining_examples(tokenizer, steps * BATCH_SIZE)
        model = new_model(tokenizer, seed)
        pretrain(model, examples, tokenizer.pad_token_id, steps, seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        save(model, tokenizer, out_dir)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        set_rng_state(rng)
    log(f"built the tiny model in {out_dir} in {time.perf_counter() - started:.0f} s")
    return out_dir


def tiny_model_path(*, steps: int = STEPS, log: Callable[[str], None] = print) -> Path:
    """The tiny model's folder, ``<cache_root()>/models/tiny-v2``, built on first use."""
    return cached_model(CACHE_NAME, lambda folder: build_tiny_model(folder, steps=steps, log=log), log)
