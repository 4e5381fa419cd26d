"""The ``hf`` engine: Hugging Face ``generate``, for any causal LM."""

from __future__ import annotations

import torch

from thinkgym.trainer.engines.rollouts import Rollouts, encode_prompts, finish_rollouts
from thinkgym.trainer.sampling import Sampling


class HFEngine:
    """Hugging Face ``generate``."""

    reports_logprobs = False

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def generate(self, prompts, n, sampling, add_special_tokens=True):
        return generate(self.model, self.tokenizer, prompts, n, sampling, add_special_tokens)



@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], n: int, sampling: Sampling, add_special_tokens: bool = True) -> Rollouts:
    """Sample ``n`` completions for each prompt (Hugging Face ``generate``)."""
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, str(device), add_special_tokens)
    prompt_ids, prompt_mask = prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0)
    output = model.generate(
        input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, temperature=sampling.temperature,
        top_p=sampling.top_p, top_k=0, max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, stop_strings=list(sampling.stop) or None,
        tokenizer=tokenizer if sampling.stop else None,
        synced_gpus=False)  # each rank samples on its own, also when FSDP manages the model
    completion_ids = output[:, prompt_ids.shape[1]:]
    return finish_rollouts(tokenizer, prompt_ids, prompt_mask, completion_ids, sampling)
