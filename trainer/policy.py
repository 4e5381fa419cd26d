"""The policy side of a training step: load a causal LM, sample completions, and
score tokens (log-probabilities and entropy) for the loss.

Batches are laid out as ``[left-padded prompt | right-padded completion]`` so
every completion starts at the same column: the forward pass only needs logits
for the completion columns (``logits_to_keep``), never for the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from thinkgym.trainer.models import ModelLoadError, check_model_path
from thinkgym.trainer.sampling import Sampling

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model(path: str, dtype: str = "float32", device: str = "cpu"):
    """(model, tokenizer) from a local checkpoint dir or a hub name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else path)
        model = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else path, dtype=DTYPES[dtype])
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


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


def token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                   temperature: float = 1.0, with_entropy: bool = False, chunk_elements: int = 1 << 25):
    """Log-probability of each completion token under ``model`` ([N, T], 0 on
    padding) and, optionally, the entropy of each next-token distribution.

    Memory-lean: the decoder runs once, then the LM head, log-softmax and gather
    run over the valid completion tokens only, a chunk of about ``chunk_elements``
    logits (128 MiB in float32) at a time, through :class:`_HeadLogprobs`, which
    keeps no logits for the backward pass. So float32 logits of shape
    [N, T, vocab] never exist, in the forward or the backward pass; the peak is a
    few [chunk, vocab] blocks. Logits are divided by the sampling temperature:
    these are the log-probs of the distribution sampled from.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    attention_mask = torch.cat([prompt_mask, completion_mask], 1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    n, t = completion_ids.shape
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 use_cache=False).last_hidden_state[:, -t - 1:-1]  # the states that predict the completion
    head = model.get_output_embeddings()
    chunk_tokens = max(1, chunk_elements // head.weight.shape[0])
    valid = completion_mask.reshape(-1).nonzero().squeeze(1)
    states, targets = hidden.reshape(n * t, -1)[valid], completion_ids.reshape(-1)[valid]
    chosen, entropy = [], []
    for start in range(0, len(valid), chunk_tokens):
        part = slice(start, start + chunk_tokens)
        logp, ent = _HeadLogprobs.apply(states[part], head.weight, head.bias, targets[part], temperature, with_entropy)
        chosen.append(logp)
        entropy.append(ent)

    def spread(values: list[torch.Tensor]) -> torch.Tensor:  # one value per valid token -> [N, T], 0 on padding
        flat = torch.cat(values) if values else hidden.new_zeros(0, dtype=torch.float32)
        return torch.zeros(n * t, device=hidden.device).index_put((valid,), flat).view(n, t)

    return spread(chosen), spread(entropy) if with_entropy else None


class _HeadLogprobs(torch.autograd.Function):
    """(log-prob of ``targets``, entropy or zeros) for one chunk of hidden states,
    with a hand-written backward: d log p(y) / d logits = onehot(y) - softmax.
    The backward recomputes the chunk's logits from the saved states (as
    activation checkpointing would) and forms that gradient in place, so it
    makes fewer full-vocabulary passes than autograd through logsumexp, gather
    and the temperature division. The entropy is a statistic: no gradient."""

    @staticmethod
    def forward(ctx, states, weight, bias, targets, temperature: float, with_entropy: bool):
        logits = _logits(states, weight, bias, temperature)
        normaliser = logits.logsumexp(-1)
        chosen = logits.gather(-1, targets[:, None]).squeeze(1) - normaliser
        entropy = torch.zeros_like(chosen)
        if with_entropy:
            logp = logits.sub_(normaliser[:, None])
            entropy = -(logp.exp() * logp).sum(-1)
        ctx.save_for_backward(states, weight, bias, targets, normaliser)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(entropy)
        return chosen, entropy

    @staticmethod
    def backward(ctx, grad_chosen, grad_entropy):
        states, weight, bias, targets, normaliser = ctx.saved_tensors
        grad = _logits(states, weight, bias, ctx.temperature)
        grad.sub_(normaliser[:, None]).exp_().mul_(-grad_chosen[:, None])  # -softmax * g
        grad[torch.arange(len(targets), device=grad.device), targets] += grad_chosen  # + onehot * g
        if ctx.temperature != 1.0:
            grad.div_(ctx.temperature)
        grad = grad.to(weight.dtype)
        grad_states = grad @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad.T @ states if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        return grad_states, grad_weight, grad_bias, None, None, None


def _logits(states, weight, bias, temperature: float) -> torch.Tensor:
    """Float32 logits of a chunk, divided by the temperature (a fresh tensor: callers write into it)."""
    logits = F.linear(states, weight, bias).float()
    return logits.div_(temperature) if temperature != 1.0 else logits
