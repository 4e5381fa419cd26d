"""Chunked log-probs equal the naive full-logits computation, values and gradients."""

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

from thinkgym.trainer.models.logprobs import token_logprobs


def naive(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature):
    """Full [N, T, vocab] float32 logits: what the chunked path must reproduce."""
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    t = completion_ids.shape[1]
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    logp = F.log_softmax(logits[:, -t - 1:-1].float() / temperature, -1)
    chosen = logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1) * completion_mask
    entropy = -(logp.exp() * logp).sum(-1) * completion_mask
    return chosen, entropy


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=3001, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = Qwen2ForCausalLM(config).float()
    prompt_ids = torch.randint(0, 3001, (3, 5))
    prompt_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    completion_ids = torch.randint(0, 3001, (3, 7))
    completion_mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0]])
    return model, (prompt_ids, prompt_mask, completion_ids, completion_mask)


@pytest.mark.parametrize("chunk", [3001, 4 * 3001 + 5, 1 << 25])  # 1 token, 4 tokens, all at once
def test_values_entropy_and_gradients_match_the_naive_path(batch, chunk):
    model, tensors = batch
    weights = torch.randn(3, 7)
    model.zero_grad()
    chosen, entropy = token_logprobs(model, *tensors, temperature=0.7, with_entropy=True, chunk_elements=chunk)
    (chosen * weights).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref_chosen, ref_entropy = naive(model, *tensors, temperature=0.7)
    (ref_chosen * weights).sum().backward()
    assert torch.allclose(chosen, ref_chosen, atol=1e-5)
    assert torch.allclose(entropy, ref_entropy, atol=1e-5)
    for got, want in zip(grads, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, atol=1e-5)
    assert (chosen[tensors[3] == 0] == 0).all()


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_the_head_backward_matches_autograd_with_a_bias(temperature):
    from thinkgym.trainer.models.logprobs import _HeadLogprobs

    g = torch.Generator().manual_seed(0)
    states = torch.randn(7, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    bias = torch.randn(50, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (7,), generator=g)
    upstream = torch.randn(7, generator=g)
    chosen, entropy = _HeadLogprobs.apply(states, weight, bias, targets, temperature, True)
    grads = torch.autograd.grad((chosen * upstream).sum(), (states, weight, bias))
    logp = F.log_softmax(F.linear(states, weight, bias) / temperature, -1)
    expected = logp.gather(-1, targets[:, None]).squeeze(1)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (states, weight, bias))
    assert torch.allclose(chosen, expected, atol=1e-5)
    assert torch.allclose(entropy, -(logp.exp() * logp).sum(-1), atol=1e-5)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-5)
