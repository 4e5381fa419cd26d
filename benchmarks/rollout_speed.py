"""Rollout tokens/s: the static-cache engine vs Hugging Face ``generate``, side by side.

Three models: the tiny built-in model (short prompts); a random-init
Qwen2-architecture model with Qwen's 151,936-token vocabulary and 256-token
prompts, where sharing each prompt's KV cache across its G samples matters; and
the real SmolLM2-135M-Instruct on chat prompts (the smollm2 recipe's rollouts).
Alternating rounds, median tokens/s of each.

Usage:  python benchmarks/rollout_speed.py [--rounds 3] [--cases tiny,qwen,smollm2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.engines.hf import HFEngine
from thinkgym.trainer.engines.static import StaticCacheEngine


def tokens_per_s(engine, prompts, n, sampling, add_special_tokens=True) -> float:
    start = time.perf_counter()
    rollouts = engine.generate(prompts, n, sampling, add_special_tokens)
    return rollouts.completion_mask.sum().item() / (time.perf_counter() - start)


class IdTokenizer:
    """Just enough tokenizer for random token ids: the prompts are id strings."""

    pad_token_id, eos_token_id = 0, 1
    padding_side = "left"

    def __call__(self, prompts, return_tensors, padding, add_special_tokens):
        ids = torch.tensor([[int(x) for x in p.split()] for p in prompts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def tiny_case():
    model, tokenizer = load_model(resolve_model("tiny"))
    return ("tiny model, 16 prompts x G=8, <=64 new tokens", model, tokenizer,
            [f"Compute {10 + i} + {50 + i}." for i in range(16)], 8, Sampling(max_new_tokens=64))


def qwen_case():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=151_936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)).eval()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 1, 0
    prompts = [" ".join(str(int(x)) for x in torch.randint(2, 151_936, (256,))) for _ in range(4)]
    return ("random Qwen2 (vocab 151,936), 4 prompts of 256 tokens x G=8, 32 new tokens", model, IdTokenizer(),
            prompts, 8, Sampling(max_new_tokens=32))


def smollm2_case():
    model, tokenizer = load_model(resolve_model("smollm2-135m-instruct"))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"Compute {3 + i % 6} × {2 + i % 7}."}],
                                             tokenize=False, add_generation_prompt=True) for i in range(8)]
    return ("SmolLM2-135M-Instruct, 8 chat prompts x G=8, <=64 new tokens", model, tokenizer, prompts, 8,
            Sampling(max_new_tokens=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="tiny,qwen,smollm2", help="comma-separated: tiny, qwen, smollm2")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    builders = {"tiny": tiny_case, "qwen": qwen_case, "smollm2": smollm2_case}
    unknown = set(args.cases.split(",")) - set(builders)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {sorted(builders)}")
    rows = []
    for case in args.cases.split(","):
        name, model, tokenizer, prompts, n, sampling = builders[case]()
        engines = {"hf": HFEngine(model, tokenizer), "static": StaticCacheEngine(model, tokenizer)}
        speed = {k: [] for k in engines}
        for _ in range(args.rounds + 1):  # the first round warms up
            for key, engine in engines.items():
                speed[key].append(tokens_per_s(engine, prompts, n, sampling))
        hf, static = (statistics.median(speed[k][1:]) for k in ("hf", "static"))
        print(f"{name}: hf {hf:.0f} tok/s, static {static:.0f} tok/s ({static / hf:.2f}x)")
        rows.append(f"| {name} | {hf:.0f} | {static:.0f} | {static / hf:.2f}x |")
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 2 threads; "
          f"median of {args.rounds} alternating rounds")
    print("\n| case | HF generate tok/s | static-cache engine tok/s | ratio |\n| --- | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
