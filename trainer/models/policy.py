"""The policy and its reference: the causal LM being trained and the frozen
model its KL is measured against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from thinkgym.trainer.models.builtin import ModelLoadError, check_model_path

if TYPE_CHECKING:
    from thinkgym.trainer.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Policy:
    """The policy as a step samples and scores it."""

    model: Any  # the causal LM being trained (unwrapped: its parallel wrapper is the run's)
    tokenizer: Any
    engine: Any  # its rollout engine (trainer/engines), sampling from ``model``'s weights
    reference: Any = None  # the frozen reference (:func:`load_reference`), when the KL is on


def load_model(path: str, dtype: str = "float32", device: str = "cpu"):
    """(model, tokenizer) from a local checkpoint dir or a hub name."""
    from transformers import AutoModelForCausalLM

    local = check_model_path(path)
    tokenizer = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else path, dtype=DTYPES[dtype])
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device), tokenizer


def load_tokenizer(path: str):
    """The tokenizer of a local checkpoint dir or a hub name, padding with EOS where it names no pad token."""
    from transformers import AutoTokenizer

    local = check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else path)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(model_config: ModelConfig, base_path: str, checkpoint: Path | None, device: str):
    """(policy, tokenizer): ``base_path``'s model, or the checkpoint's when
    resuming; with ``lora_rank`` > 0, peft LoRA adapters on it (the checkpoint
    then holds the adapters)."""
    m = model_config
    if m.lora_rank:
        from peft import LoraConfig, PeftModel, get_peft_model
        model, tokenizer = load_model(base_path, m.dtype, device)
        if checkpoint:
            model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
        else:
            model = get_peft_model(model, LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=0.0,
                                                     target_modules=m.lora_targets, task_type="CAUSAL_LM"))
    else:
        model, tokenizer = load_model(str(checkpoint) if checkpoint else base_path, m.dtype, device)
    if m.gradient_checkpointing:  # renamed in transformers 5
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    return model, tokenizer


def load_reference(model_config: ModelConfig, base_path: str, policy, device: str):
    """The frozen reference: ``base_path``'s model, or, under LoRA, the policy
    itself with its adapters disabled, so no second copy is loaded."""
    if model_config.lora_rank:
        return AdapterFree(policy)
    return load_model(base_path, model_config.dtype, device)[0].eval()


class AdapterFree:
    """A peft model seen with its adapters disabled: the LoRA run's reference.
    Only what :func:`~thinkgym.trainer.models.logprobs.token_logprobs` uses: the decoder and the LM head."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def eval(self):
        return self

    def get_decoder(self):
        decoder = self.peft_model.get_decoder()

        def run(**kwargs):
            with self.peft_model.disable_adapter():
                return decoder(**kwargs)
        return run

    def get_output_embeddings(self):
        return self.peft_model.get_output_embeddings()
