"""The ``static`` engine: a sampling loop that does less work for Llama-family
decoders (see :class:`StaticCacheEngine`)."""

from __future__ import annotations

import math

import torch

from thinkgym.trainer.engines.rollouts import encode_prompts, finish_rollouts
from thinkgym.trainer.sampling import Sampling


class StaticCacheEngine:
    """Sampling with a preallocated KV cache, driving the model's own decoder layers.

    Each prompt is encoded once and its cache copied to its n samples (prefix
    reuse); every later token is written in place into a cache allocated for
    the whole rollout, so no step copies the cache (HF's dynamic cache
    concatenates it anew each token). Finished rows leave the batch once a
    quarter of it has finished (early exit; dropping rows copies the cache, so
    not after every token). Tokens are drawn with two-stage sampling, exact and
    far cheaper than ``torch.multinomial`` over a 151k vocabulary on CPU.
    The model's layers, norms and rotary embedding are called as they are, so
    the engine supports the decoder families whose forward is exactly
    ``embed -> layers -> norm -> lm_head`` (``SUPPORTED``); others use ``hf``.
    """

    SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
    reports_logprobs = True

    def __init__(self, model, tokenizer):
        problem = self.unsupported(model)
        if problem:
            raise ValueError(f"sampling.engine 'static' {problem}; use sampling.engine=hf")
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def unsupported(cls, model) -> str | None:
        """Why the engine cannot run ``model`` exactly, or None."""
        model_type = getattr(model.config, "model_type", None)
        if model_type not in cls.SUPPORTED:
            return f"supports {', '.join(cls.SUPPORTED)} models, not {model_type!r}"
        if model.config._attn_implementation not in ("sdpa", "eager"):
            return f"needs attn_implementation sdpa or eager, not {model.config._attn_implementation!r}"
        return _cache_contract_problem(model)

    @torch.no_grad()
    def generate(self, prompts, n, sampling, add_special_tokens=True):
        model, tok = self.model, self.tokenizer
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        device = head.weight.device
        prompt_ids, prompt_mask = encode_prompts(tok, prompts, str(device), add_special_tokens)
        width, new = prompt_ids.shape[1], sampling.max_new_tokens
        _check_window(model.config, width + new)
        cache = _StaticKV(model.config, len(prompts), width + new, head.weight.dtype, device)
        # Prefill the distinct prompts: causal, padding keys masked; each position also sees itself,
        # so left-padding rows stay finite (they are never attended to).
        valid = torch.ones(len(prompts), width + new, dtype=torch.bool, device=device)
        valid[:, :width] = prompt_mask.bool()
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        allowed = (causal & valid[:, None, :width]) | torch.eye(width, dtype=torch.bool, device=device)
        positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)
        embedded = decoder.embed_tokens(prompt_ids)
        hidden = _run_layers(decoder.layers, embedded, decoder.rotary_emb(embedded, positions), positions,
                             allowed[:, None], cache)
        # The n samples of a prompt share its encoding.
        cache.repeat_rows(n)
        valid, positions = valid.repeat_interleave(n, 0), positions[:, -1:].repeat_interleave(n, 0)
        logits = head(decoder.norm(hidden[:, -1])).float().repeat_interleave(n, 0)
        rows = len(prompts) * n
        tokens = torch.full((rows, new), tok.pad_token_id, device=device)
        logprobs = torch.zeros(rows, new, device=device)
        active = torch.arange(rows, device=device)  # the output row of each batch row
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        # A stop string of c characters spans at most c tokens; one more keeps its first token's
        # leading space (SentencePiece drops it when a decode starts at that token).
        stop_window = max(map(len, sampling.stop), default=0) + 1
        for t in range(new):
            token, logprob = _sample(logits, sampling)
            live = ~finished
            tokens[active[live], t], logprobs[active[live], t] = token[live], logprob[live]
            finished |= token == tok.eos_token_id
            if sampling.stop:  # decode only each live row's last few tokens: enough to hold a stop string
                for j in live.nonzero().squeeze(1).tolist():
                    tail = tok.decode(tokens[active[j], max(0, t + 1 - stop_window):t + 1], skip_special_tokens=True)
                    finished[j] |= any(s in tail for s in sampling.stop)
            if finished.all() or t == new - 1:
                break
            if finished.sum() * 4 >= len(finished):  # early exit, in batches
                keep = (~finished).nonzero().squeeze(1)
                cache.select_rows(keep)
                active, token, valid, positions, finished = active[keep], token[keep], valid[keep], positions[keep], finished[keep]
            cache.length = width + t
            positions = positions + 1
            mask = valid[:, None, None, :cache.length + 1]
            embedded = decoder.embed_tokens(token[:, None])
            hidden = _run_layers(decoder.layers, embedded, decoder.rotary_emb(embedded, positions), positions, mask, cache)
            logits = head(decoder.norm(hidden[:, -1])).float()
        # As wide as the longest completion, like generate's output: the trainer pays for every column.
        tokens, logprobs = tokens[:, :t + 1], logprobs[:, :t + 1]
        rollouts = finish_rollouts(tok, prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0),
                                   tokens, sampling)
        rollouts.rollout_logprobs = logprobs * rollouts.completion_mask
        return rollouts


class _StaticKV:
    """The cache the decoder layers write into (HF's ``Cache.update`` contract):
    per layer, keys and values of shape [rows, kv_heads, max_length, head_dim],
    written in place at ``length`` and read back as views up to the new end."""

    def __init__(self, config, rows: int, max_length: int, dtype, device):
        heads = config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (rows, heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.length = 0
        self.updates = 0  # calls of update, for the contract probe

    def update(self, key, value, layer_idx, *args, **kwargs):
        self.updates += 1
        end = self.length + key.shape[2]
        self.keys[layer_idx][:, :, self.length:end] = key
        self.values[layer_idx][:, :, self.length:end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def repeat_rows(self, n: int) -> None:
        self.keys = [k.repeat_interleave(n, 0) for k in self.keys]
        self.values = [v.repeat_interleave(n, 0) for v in self.values]

    def select_rows(self, rows: torch.Tensor) -> None:
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]


def _run_layers(layers, hidden, rotary, positions, allowed, cache: _StaticKV):
    """``layers`` over ``hidden`` at ``positions``, with the rotary embedding
    ``rotary`` (cos, sin); ``allowed`` is the boolean attention pattern, passed
    as an additive mask (eager and sdpa take it).

    The layers are called with ``(hidden_states, attention_mask, position_ids,
    cache)`` by position, ``position_embeddings`` by name: the cache's keyword
    changed name (``past_key_values`` in transformers 4, ``cache`` in 5) but
    not its place in the signature, the fourth."""
    mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
    mask.masked_fill_(~allowed, torch.finfo(hidden.dtype).min)
    for layer in layers:
        hidden = layer(hidden, mask, positions, cache, position_embeddings=rotary)
    return hidden


def _cache_contract_problem(model) -> str | None:
    """Run one token through a decoder layer of ``model``'s class, built on the
    meta device (no memory, no compute, and the model itself untouched, which
    matters once FSDP has sharded it): the engine is exact only if the layer
    takes the cache where :func:`_run_layers` puts it, writes its keys and values
    through ``Cache.update`` and returns hidden states of the input's shape. A
    check of behaviour, not of parameter names, which transformers renames."""
    config = model.config
    try:
        with torch.device("meta"):
            layer = type(model.get_decoder().layers[0])(config, 0)
            hidden = torch.zeros(1, 1, config.hidden_size)
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            rotary = (torch.ones(1, 1, head_dim), torch.zeros(1, 1, head_dim))
            cache = _StaticKV(config, 1, 1, hidden.dtype, hidden.device)
            out = _run_layers([layer], hidden, rotary, torch.zeros(1, 1, dtype=torch.long),
                              torch.ones(1, 1, 1, 1, dtype=torch.bool), cache)
    except Exception as exc:  # any failure here means the layers' conventions moved
        return f"cannot call this transformers' decoder layers with a KV cache ({type(exc).__name__}: {exc})"
    if cache.updates != 1 or not isinstance(out, torch.Tensor) or out.shape != hidden.shape:
        return "found decoder layers that do not write their keys and values through Cache.update"
    return None


def _check_window(config, length: int) -> None:
    window = getattr(config, "sliding_window", None)
    if window and "sliding_attention" in (getattr(config, "layer_types", None) or ["sliding_attention"]) and length > window:
        raise ValueError(f"sampling.engine 'static' does not apply sliding-window attention ({window} tokens) "
                         f"to rollouts of {length}; use sampling.engine=hf")


def _sample(logits: torch.Tensor, sampling: Sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row from softmax(logits / temperature), nucleus-truncated to
    ``top_p``, and its log-prob under that (truncated, renormalised) distribution.
    Full-vocabulary passes are few (they dominate at a 151k vocabulary): no
    log-softmax, only the chosen token's log-prob."""
    scaled = logits / sampling.temperature if sampling.temperature != 1.0 else logits
    if sampling.top_p < 1.0:
        scaled = _nucleus(scaled, sampling.top_p)
    rows, vocab = scaled.shape
    block = math.isqrt(vocab - 1) + 1  # blocks of about sqrt(vocab) ids; the last one padded with zero weight
    weights = scaled.new_zeros(rows, -(-vocab // block) * block)
    top = scaled.max(-1, keepdim=True).values
    weights[:, :vocab] = scaled - top
    weights[:, :vocab].exp_()
    token = _two_stage_multinomial(weights.view(rows, -1, block)).clamp(max=vocab - 1)  # rounding: never a pad slot
    logprob = scaled.gather(-1, token[:, None]).squeeze(1) - top.squeeze(1) - weights.sum(-1).log()
    return token, logprob


def _nucleus(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """``scaled`` logits with -inf outside the smallest set of tokens whose mass reaches ``top_p``."""
    sorted_logits, order = scaled.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    outside = probs.cumsum(-1) - probs >= top_p
    return scaled.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))


def _two_stage_multinomial(blocks: torch.Tensor) -> torch.Tensor:
    """One id per row of ``blocks`` ([rows, n_blocks, block] unnormalised
    weights of consecutive ids): a block by its total weight, then an id within
    it by its own, each by inverting a small cumulative sum. The product of the
    two draws is exactly the id's probability, at a fraction of the cost of
    ``torch.multinomial`` over the whole vocabulary (which draws one random
    number per logit; this draws two per row)."""
    chosen = _invert_cdf(blocks.sum(-1))
    within = _invert_cdf(blocks[torch.arange(len(blocks), device=blocks.device), chosen])
    return chosen * blocks.shape[2] + within


def _invert_cdf(weights: torch.Tensor) -> torch.Tensor:
    """An index per row, drawn with probability proportional to ``weights``."""
    cdf = weights.cumsum(-1)
    u = torch.rand(len(cdf), 1, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp(max=cdf.shape[1] - 1)
