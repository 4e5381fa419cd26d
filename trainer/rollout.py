"""Rollout engines: ``engine.generate(prompts, n, sampling) -> Rollouts``.

``hf`` is Hugging Face ``generate``. ``cached`` is a plain sampling loop that
does less work: each prompt is encoded once and its KV cache shared by its n
samples (prefix reuse), finished sequences leave the batch (early exit), and
stop strings are checked only on the tokens just sampled. It also returns the
log-prob of each sampled token under the sampling distribution, which the
trainer can compare with its own (the mismatch metric and truncated importance
sampling). An engine such as vLLM or SGLang fits the same one-method interface.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from thinkgym.trainer.policy import Rollouts, Sampling, encode_prompts, finish_rollouts, generate


class RolloutEngine(Protocol):
    def generate(self, prompts: list[str], n: int, sampling: Sampling, add_special_tokens: bool = True) -> Rollouts:
        """``len(prompts) * n`` completions, the n of each prompt consecutive."""


class HFEngine:
    """Hugging Face ``generate``."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def generate(self, prompts, n, sampling, add_special_tokens=True):
        return generate(self.model, self.tokenizer, prompts, n, sampling, add_special_tokens)


class CachedEngine:
    """Sampling with a shared prompt cache and early exit (see the module docstring)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @torch.no_grad()
    def generate(self, prompts, n, sampling, add_special_tokens=True):
        model, tok = self.model, self.tokenizer
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = encode_prompts(tok, prompts, str(device), add_special_tokens)
        cache = DynamicCache()
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, past_key_values=cache, use_cache=True,
                    position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0), logits_to_keep=1)
        cache.batch_repeat_interleave(n)  # the n samples of a prompt share its encoding
        logits = out.logits[:, -1].float().repeat_interleave(n, 0)
        mask = prompt_mask.repeat_interleave(n, 0)
        rows = mask.shape[0]
        tokens = torch.full((rows, sampling.max_new_tokens), tok.pad_token_id, device=device)
        logprobs = torch.zeros(rows, sampling.max_new_tokens, device=device)
        active = torch.arange(rows, device=device)  # rows still generating, in cache order
        texts = [""] * rows
        for t in range(sampling.max_new_tokens):
            token, logprob = _sample(logits, sampling)
            tokens[active, t], logprobs[active, t] = token, logprob
            done = token == tok.eos_token_id
            for j, row in enumerate(active.tolist()):  # stop strings: decode only the new token
                if sampling.stop and not done[j]:
                    texts[row] += tok.decode([int(token[j])], skip_special_tokens=True)
                    done[j] = any(s in texts[row][-len(s) - 8:] for s in sampling.stop)
            keep = ~done
            if not keep.any() or t == sampling.max_new_tokens - 1:
                break
            if not keep.all():  # early exit: finished rows leave the batch and the cache
                cache.batch_select_indices(keep.nonzero().squeeze(1))
                active, token, mask = active[keep], token[keep], mask[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, past_key_values=cache, use_cache=True,
                        position_ids=mask.sum(1, keepdim=True) - 1)
            logits = out.logits[:, -1].float()
        rollouts = finish_rollouts(tok, prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0),
                                   tokens, sampling)
        rollouts.rollout_logprobs = logprobs * rollouts.completion_mask
        return rollouts


def _sample(logits: torch.Tensor, sampling: Sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row from softmax(logits / temperature), nucleus-truncated to
    ``top_p``, and its log-prob under that (truncated, renormalised) distribution."""
    logp = F.log_softmax(logits / sampling.temperature, -1)
    if sampling.top_p < 1.0:
        sorted_logp, order = logp.sort(-1, descending=True)
        outside = sorted_logp.exp().cumsum(-1) - sorted_logp.exp() >= sampling.top_p
        logp = logp.scatter(-1, order, sorted_logp.masked_fill(outside, float("-inf")))
        logp = logp - logp.logsumexp(-1, keepdim=True)
    token = torch.multinomial(logp.exp(), 1).squeeze(1)
    return token, logp.gather(-1, token[:, None]).squeeze(1)


ENGINES = {"hf": HFEngine, "cached": CachedEngine}


def make_engine(name: str, model, tokenizer) -> RolloutEngine:
    return ENGINES[name](model, tokenizer)
