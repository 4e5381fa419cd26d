"""Rollouts: a batch of sampled completions, as every engine returns them.

Batches are laid out as ``[left-padded prompt | right-padded completion]`` so
every completion starts at the same column: the trainer's forward pass only
needs logits for the completion columns, never for the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkgym.trainer.sampling import Sampling


@dataclass
class Rollouts:
    """``len(prompts) * n`` completions, the ``n`` of each prompt consecutive."""

    prompt_ids: torch.Tensor       # [N, P] left-padded
    prompt_mask: torch.Tensor      # [N, P]
    completion_ids: torch.Tensor   # [N, T] right-padded
    completion_mask: torch.Tensor  # [N, T] 1 on generated tokens (through EOS / stop string)
    texts: list[str]               # decoded completions, cut at the stop string
    truncated: torch.Tensor        # [N] bool: hit max_new_tokens without EOS or a stop string
    old_logprobs: torch.Tensor | None = None  # [N, T] under the policy that sampled them (set by the trainer)
    ref_logprobs: torch.Tensor | None = None  # [N, T] under the reference model, when KL is on
    rollout_logprobs: torch.Tensor | None = None  # [N, T] as the rollout engine sampled them, when it reports them


def encode_prompts(tokenizer, prompts: list[str], device: str, add_special_tokens: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids. Chat-templated prompts already hold their special
    tokens (``add_special_tokens=False``); raw prompts get the tokenizer's BOS."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def finish_rollouts(tokenizer, prompt_ids, prompt_mask, completion_ids, sampling: Sampling) -> Rollouts:
    """Mask each completion after its EOS or the token that completed a stop string."""
    n, t = completion_ids.shape
    mask = torch.zeros_like(completion_ids)
    texts, truncated = [], []
    for i in range(n):
        ids = completion_ids[i].tolist()
        end, done = t, False
        if tokenizer.eos_token_id in ids:
            end, done = ids.index(tokenizer.eos_token_id) + 1, True
        text = tokenizer.decode(ids[:end], skip_special_tokens=True)
        for stop in sampling.stop:
            cut = text.find(stop)
            if cut != -1:  # keep tokens up to the one that completes the stop string
                text, done = text[:cut + len(stop)], True
                end = min(end, _tokens_covering(tokenizer, ids, len(text)))
        mask[i, :end] = 1
        texts.append(text)
        truncated.append(not done)
    completion_ids = completion_ids.masked_fill(mask == 0, tokenizer.pad_token_id)
    return Rollouts(prompt_ids, prompt_mask, completion_ids, mask, texts, torch.tensor(truncated))


def _tokens_covering(tokenizer, ids: list[int], chars: int) -> int:
    """The fewest leading tokens whose decoded text has at least ``chars`` characters."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def select(r: Rollouts, keep: torch.Tensor) -> Rollouts:
    """The rows of ``r`` where ``keep`` (a bool mask over its rows) is true, or,
    for integer ``keep``, the rows it lists, in its order."""
    def pick(x):
        return None if x is None else x[keep]
    texts = [x for x, k in zip(r.texts, keep.tolist()) if k] if keep.dtype == torch.bool else \
        [r.texts[i] for i in keep.tolist()]
    return Rollouts(r.prompt_ids[keep], r.prompt_mask[keep], r.completion_ids[keep], r.completion_mask[keep],
                    texts, r.truncated[keep],
                    pick(r.old_logprobs), pick(r.ref_logprobs), pick(r.rollout_logprobs))


def concat(parts: list[Rollouts], pad_id: int) -> Rollouts:
    """Stack rollouts of different widths: prompts left-padded, completions right-padded."""
    p = max(r.prompt_ids.shape[1] for r in parts)
    c = max(r.completion_ids.shape[1] for r in parts)

    def stack(name, width, value, left):
        tensors = [getattr(r, name) for r in parts]
        if tensors[0] is None:
            return None
        return torch.cat([torch.nn.functional.pad(x, (width - x.shape[1], 0) if left else (0, width - x.shape[1]),
                                                  value=value) for x in tensors])

    return Rollouts(stack("prompt_ids", p, pad_id, True), stack("prompt_mask", p, 0, True),
                    stack("completion_ids", c, pad_id, False), stack("completion_mask", c, 0, False),
                    [x for r in parts for x in r.texts], torch.cat([r.truncated for r in parts]),
                    stack("old_logprobs", c, 0.0, False), stack("ref_logprobs", c, 0.0, False),
                    stack("rollout_logprobs", c, 0.0, False))
