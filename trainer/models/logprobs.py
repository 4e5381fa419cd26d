"""Per-token log-probabilities (and entropies) of completions under a causal LM:
what every loss reads.

Rows are laid out as :class:`~thinkgym.trainer.engines.rollouts.Rollouts` lays
them out, ``[left-padded prompt | right-padded completion]``, so the decoder's
states that predict the completion are its last ``T`` columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    hidden = completion_states(model.get_decoder(), prompt_ids, prompt_mask, completion_ids, completion_mask)
    return head_logprobs(model.get_output_embeddings(), hidden, completion_ids, completion_mask, temperature,
                         with_entropy, chunk_elements)


def completion_states(decoder, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """``[N, T, hidden]``: the decoder's states that predict each completion token
    (the state after the prompt and the completion tokens before it), the
    positions the LM head and a value head read."""
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    attention_mask = torch.cat([prompt_mask, completion_mask], 1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    t = completion_ids.shape[1]
    return decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False).last_hidden_state[:, -t - 1:-1]


def head_logprobs(head, hidden, completion_ids, completion_mask, temperature: float = 1.0,
                  with_entropy: bool = False, chunk_elements: int = 1 << 25):
    """:func:`token_logprobs` from the completion states ``hidden`` on: the LM
    ``head`` (a linear layer) over the valid tokens, a chunk at a time."""
    n, t = completion_ids.shape
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
