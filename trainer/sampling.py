"""How completions are sampled: one dataclass for the config's ``sampling``
section, ``thinkgym eval``'s sampling flags and what the rollout engines take.

Plain data with no torch, so the CLI checks it before torch is imported.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Optional

ENGINE_NAMES = ("auto", "hf", "static", "vllm")
"""The rollout engines (:mod:`thinkgym.trainer.engines`) and ``auto``: static
where it supports the model, else hf (never vllm: an explicit choice)."""


@dataclass
class VLLMOptions:
    """``sampling.vllm``: the ``vllm`` engine's options (trainer/engines/vllm.py)."""

    sync_every: int = 1  # load the policy's weights into the engine every this many optimizer steps
    gpu_memory_utilization: float = 0.3  # GPU: the share of its memory the engine takes (weights and KV cache)
    cpu_kv_cache_gib: float = 1.0  # CPU: the engine's KV cache
    max_model_len: Optional[int] = None  # longest prompt + completion; None: the model's own
    sleep: bool = False  # free the engine's GPU memory (sleep mode, level 1) while the policy trains


@dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # stop strings: a completion ends with the first it writes
    engine: Literal["auto", "hf", "static", "vllm"] = "auto"  # one of ENGINE_NAMES
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    tis_cap: Optional[float] = None  # training only: truncated importance sampling, min(p_train / p_rollout, cap)


def sampling_problems(s: Sampling, key: Callable[[str], str]) -> list[str]:
    """What is wrong with ``s``, each problem naming its field as ``key(field)``
    (``sampling.top_p`` in a config, ``--top-p`` on the command line)."""
    checks = [(s.temperature <= 0, "temperature", f"must be > 0, got {s.temperature}"),
              (not 0 < s.top_p <= 1, "top_p", f"must be in (0, 1], got {s.top_p}"),
              (s.max_new_tokens < 1, "max_new_tokens", f"must be >= 1, got {s.max_new_tokens}"),
              (s.engine not in ENGINE_NAMES, "engine", f"must be one of {', '.join(ENGINE_NAMES)}; got {s.engine!r}"),
              (s.tis_cap is not None and s.tis_cap < 1, "tis_cap", f"must be >= 1, got {s.tis_cap}"),
              (s.vllm.sync_every < 1, "vllm.sync_every", f"must be >= 1, got {s.vllm.sync_every}"),
              (not 0 < s.vllm.gpu_memory_utilization <= 1, "vllm.gpu_memory_utilization",
               f"must be in (0, 1], got {s.vllm.gpu_memory_utilization}"),
              (s.vllm.cpu_kv_cache_gib <= 0, "vllm.cpu_kv_cache_gib", f"must be > 0, got {s.vllm.cpu_kv_cache_gib}"),
              (s.vllm.max_model_len is not None and s.vllm.max_model_len < 1, "vllm.max_model_len",
               f"must be >= 1, got {s.vllm.max_model_len}"),
              (s.tis_cap is not None and s.engine == "hf", "tis_cap",
               "needs an engine that reports its log-probs (engine: static, vllm or auto), not hf")]
    return [f"{key(name)} {message}" for failed, name, message in checks if failed]


def add_sampling_flags(parser: argparse.ArgumentParser, defaults: Sampling) -> None:
    """``--temperature``, ``--top-p``, ``--max-new-tokens``, ``--stop`` and ``--engine``,
    defaulting to ``defaults``; :func:`sampling_from_flags` reads them back."""
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--stop", action="append", default=list(defaults.stop), metavar="STR",
                        help="stop string (repeatable)")
    parser.add_argument("--engine", default=defaults.engine, choices=ENGINE_NAMES,
                        help="rollout engine (default auto: static for Llama/Mistral/Qwen2/Qwen3, else hf; vllm "
                             "only when named)")


def sampling_from_flags(args: argparse.Namespace) -> Sampling:
    return Sampling(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                    stop=list(args.stop), engine=args.engine)
