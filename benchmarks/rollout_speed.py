"""Rollout tokens/s: the static-cache engine vs Hugging Face ``generate``, side by side.

Two models: the tiny built-in model (short prompts), and a random-init
Qwen2-architecture model with Qwen's 151,936-token vocabulary and 256-token
prompts, where sharing each prompt's KV cache across its G samples matters.
Alternating rounds, median tokens/s of each.

Usage:  python benchmarks/rollout_speed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from thinkgym.trainer.policy import Sampling, load_model
    from thinkgym.trainer.rollout import HFEngine, StaticCacheEngine
    from thinkgym.trainer.tiny_model import tiny_model_path

    torch.set_num_threads(2)
    torch.manual_seed(0)
    tiny, tiny_tok = load_model(str(tiny_model_path()))
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=151_936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)).eval()
    qwen.generation_config.eos_token_id, qwen.generation_config.pad_token_id = 1, 0
    cases = {
        "tiny model, 16 prompts x G=8, <=64 new tokens": (tiny, tiny_tok, [f"Compute {10 + i} + {50 + i}." for i in range(16)],
                                                          8, Sampling(max_new_tokens=64)),
        "random Qwen2 (vocab 151,936), 4 prompts of 256 tokens x G=8, 32 new tokens": (
            qwen, IdTokenizer(), [" ".join(str(int(x)) for x in torch.randint(2, 151_936, (256,))) for _ in range(4)],
            8, Sampling(max_new_tokens=32)),
    }
    rows = []
    for name, (model, tokenizer, prompts, n, sampling) in cases.items():
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
