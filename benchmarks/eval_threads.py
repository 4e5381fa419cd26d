"""Sampling speed of Hugging Face ``generate`` against torch's CPU thread count:
the figures behind the default of ``thinkgym eval --threads`` (and ``train.cpu_threads``).

Two models: the tiny built-in model (built on first use) and a randomly
initialised Llama shaped like SmolLM2-135M but with 12 layers instead of 30
(hidden 576, 9 query and 3 key/value heads, vocabulary 49,152: 71M parameters).
Each samples ``batch`` sequences of exactly ``--new-tokens`` tokens (no early
stop) from 24-token prompts, at every thread count and batch size, ``--repeats``
times; the best run's generated tokens per second is reported (the others are
slowed by whatever else the machine runs). Run it on an idle machine and again
while something else keeps the cores busy: extra threads that help the first
can slow the second down many times over.

    python benchmarks/eval_threads.py [--threads 1,2] [--batch 8,32] [--new-tokens 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from thinkgym.trainer.models.tiny import tiny_model_path

SMOL_LIKE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True)
"""SmolLM2-135M's shape, 12 of its 30 layers."""

PROMPT_TOKENS = 24


def tokens_per_s(model, batch: int, new_tokens: int, repeats: int) -> float:
    """Best generated tokens/s over ``repeats`` runs of ``batch`` sampled sequences."""
    prompts = torch.randint(3, model.config.vocab_size, (batch, PROMPT_TOKENS), generator=torch.Generator().manual_seed(0))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
        best = max(best, batch * new_tokens / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--batch", default="8,32", help="comma-separated batch sizes (sequences)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"tiny (0.65M)": AutoModelForCausalLM.from_pretrained(tiny_model_path()),
              "random Llama (71M)": LlamaForCausalLM(LlamaConfig(**SMOL_LIKE))}
    print(f"model                 params  batch  threads  tokens/s   ({args.new_tokens} new tokens, best of {args.repeats})")
    for name, model in models.items():
        model.eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for batch in map(int, args.batch.split(",")):
            for threads in map(int, args.threads.split(",")):
                torch.set_num_threads(threads)
                speed = tokens_per_s(model, batch, args.new_tokens, args.repeats)
                print(f"{name:20}  {params:5.1f}M  {batch:5}  {threads:7}  {speed:8.1f}", flush=True)


if __name__ == "__main__":
    main()
