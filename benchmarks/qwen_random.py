"""A randomly initialised Qwen2-architecture model with Qwen's 151,936-wide vocabulary.

The benchmark against TRL (``benchmarks/vs_trl.py``) needs a model whose
logits are as wide as a real Qwen's, without downloading one. This helper
builds one from a config, with a tokenizer of our own:

* the tokenizer is a byte-level BPE (the kind Qwen uses) built with the
  ``tokenizers`` library: the 256 byte symbols, every pair of them, and then
  triples until there are 151,643 regular tokens, each reachable through a
  merge, followed by Qwen's special tokens (``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``) and a ChatML chat template;
* the model is ``Qwen2ForCausalLM`` with ``vocab_size=151936`` (Qwen2/2.5's
  padded embedding size), tied embeddings, grouped-query attention and a few
  narrow layers: about 40-45M parameters, nearly all of them in the embedding,
  so the ``[tokens x 151936]`` logits dominate the cost, as in small real Qwens.

The weights are random (seeded), so the model samples near-uniform garbage:
its completions hit the length limit and score 0, which is what a throughput
benchmark wants (every completion is max length on both sides).

The result is a standard Hugging Face checkpoint folder that
``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``, ``thinkgym train``
(``--set model.path=DIR``) and TRL load.

    python benchmarks/qwen_random.py [--out DIR] [--layers 4] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
from itertools import product
from pathlib import Path

QWEN_VOCAB = 151_936  # Qwen2 / Qwen2.5 config vocab_size (embedding rows)
REGULAR_TOKENS = 151_643  # Qwen2's byte-level BPE size; specials start here
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Qwen's ChatML layout (without its default system message)."""


def model_config(layers: int = 4, hidden: int = 256) -> dict:
    """The Qwen2Config fields of the benchmark model: ``layers`` narrow layers,
    GQA with 4 query and 2 key/value heads, Qwen's vocabulary, tied embeddings."""
    return {
        "vocab_size": QWEN_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rope_theta": 1_000_000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "bos_token_id": None,
        "eos_token_id": REGULAR_TOKENS + 2,  # <|im_end|>
        "pad_token_id": REGULAR_TOKENS,  # <|endoftext|>
    }


def build_tokenizer():
    """A byte-level BPE tokenizer with exactly ``REGULAR_TOKENS`` regular tokens
    (bytes, then all byte pairs, then byte triples, each with its merge) and Qwen's
    special tokens after them; ``len(tokenizer) == 151646``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for a, b in product(alphabet, repeat=2):
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    for a, b, c in product(alphabet, repeat=3):
        if len(vocab) >= REGULAR_TOKENS:
            break
        vocab[a + b + c] = len(vocab)
        merges.append((a + b, c))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == REGULAR_TOKENS
    return tokenizer


def build(out_dir: str | os.PathLike, layers: int = 4, hidden: int = 256, seed: int = 0) -> Path:
    """Write the random-init Qwen2 checkpoint (fp32) and its tokenizer into ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    config = Qwen2Config(**model_config(layers, hidden))
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    config_file = out_dir / "tokenizer_config.json"
    data = json.loads(config_file.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"  # loads in transformers 4 and 5 alike
    config_file.write_text(json.dumps(data, indent=2) + "\n")
    return out_dir


def qwen_random_path(layers: int = 4, hidden: int = 256, seed: int = 0, log=print) -> Path:
    """The model's folder in the thinkgym cache (``$THINKGYM_CACHE`` or
    ``~/.cache/thinkgym``), built on first use (a few seconds); written to a
    temporary folder and renamed into place, so it is either absent or whole."""
    from thinkgym.trainer.models.builtin import cached_model

    return cached_model(f"qwen2-random-v1-l{layers}-h{hidden}-s{seed}",
                        lambda folder: build(folder, layers, hidden, seed), log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="checkpoint folder (default: the thinkgym cache)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build(args.out, args.layers, args.hidden, args.seed) if args.out else \
        qwen_random_path(args.layers, args.hidden, args.seed)
    from transformers import AutoConfig, AutoTokenizer
    import safetensors.torch
    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    params = sum(t.numel() for t in safetensors.torch.load_file(str(path / "model.safetensors")).values())
    print(f"{path}: {config.model_type}, {params / 1e6:.1f}M parameters, vocab_size {config.vocab_size}, "
          f"tokenizer {len(tokenizer)} tokens, {config.num_hidden_layers} layers x {config.hidden_size}")


if __name__ == "__main__":
    main()
