"""Rollout engines: ``engine.generate(prompts, n, sampling) -> Rollouts``.

``hf`` is Hugging Face ``generate``: any model. ``static`` is a sampling loop
that does less work for Llama-family decoders: a preallocated KV cache written
in place, each prompt encoded once for its n samples (prefix reuse), early exit
of finished rows, stop strings checked on new tokens only, and a cheap exact
sampler. It also returns the log-prob of each sampled token under the sampling
distribution, which the trainer compares with its own (the mismatch metric and
truncated importance sampling). ``vllm`` is vLLM in this process, its weights
loaded in place after optimizer steps (``load_weights``); hf and static
sample from the policy's own weights, so they have nothing to load, except
when off-policy rollouts wrap them in a ``SnapshotEngine`` over a copy."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

from thinkgym.trainer.engines.hf import HFEngine
from thinkgym.trainer.engines.rollouts import Rollouts
from thinkgym.trainer.engines.snapshot import SnapshotEngine
from thinkgym.trainer.engines.static import StaticCacheEngine
from thinkgym.trainer.engines.vllm import VLLMEngine
from thinkgym.trainer.sampling import Sampling


class RolloutEngine(Protocol):
    tokenizer: Any  # the model's tokenizer (chat templates are rendered with it)
    reports_logprobs: bool  # whether ``generate`` fills ``Rollouts.rollout_logprobs``

    def generate(self, prompts: list[str], n: int, sampling: Sampling, add_special_tokens: bool = True) -> Rollouts:
        """``len(prompts) * n`` completions, the n of each prompt consecutive."""


ENGINES = {"hf": HFEngine, "static": StaticCacheEngine, "vllm": VLLMEngine}


def holds_own_weights(engine) -> bool:
    """Whether ``engine`` samples from weights of its own, which lag behind the
    policy's until its ``load_weights(model)`` (``lag``: by how many optimizer steps;
    ``policy_stepped()``: counts one and says whether it is time to load)."""
    return isinstance(engine, (VLLMEngine, SnapshotEngine))


class EngineFallbackWarning(UserWarning):
    """``auto`` could not use the fast engine for a model."""


def make_engine(name: str, model, tokenizer, sampling: Sampling | None = None, seed: int = 0) -> RolloutEngine:
    """The engine called ``name``. ``auto`` is ``static`` where it supports the
    model, else ``hf`` with an ``EngineFallbackWarning`` that names the reason:
    for a family the static engine claims, a fallback is a defect to report.
    ``vllm`` takes ``sampling.vllm``'s options and ``seed``."""
    if name == "auto":
        problem = StaticCacheEngine.unsupported(model)
        if problem is None:
            name = "static"
        else:
            name = "hf"
            claimed = getattr(model.config, "model_type", None) in StaticCacheEngine.SUPPORTED
            warnings.warn(f"sampling.engine auto: falling back to HF generate, which samples about 2-3x slower "
                          f"(benchmarks/RESULTS.md), because the static engine {problem}"
                          + (" (a supported family: please report this with your transformers version)" if claimed else ""),
                          EngineFallbackWarning, stacklevel=2)
    if name == "vllm":
        return VLLMEngine(model, tokenizer, (sampling or Sampling()).vllm, seed)
    return ENGINES[name](model, tokenizer)
