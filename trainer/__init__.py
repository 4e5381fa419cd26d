"""RL training of causal language models on thinkgym environments: the GRPO family and PPO.

The public names below load on first use (PEP 562), each from the module that
defines it: importing ``thinkgym.trainer`` or a light submodule (the config, the
presets) does not import torch, so a bad config is reported in about a second.
"""

import importlib

_HOMES = {
    "ESTIMATORS": "advantages", "group_advantages": "advantages", "register_estimator": "advantages",
    "AGGREGATIONS": "algorithm_config", "KL_KINDS": "algorithm_config", "PRESETS": "algorithm_config",
    "AlgorithmConfig": "algorithm_config", "preset": "algorithm_config",
    "LOSSES": "losses", "register_loss": "losses", "aggregate": "losses", "informative_groups": "losses",
    "kl_penalty": "losses", "policy_loss": "losses",
    "Config": "config", "load_config": "config",
    "OBJECTIVES": "run", "train": "run",
    "maj_at_k": "evaluation.passk", "pass_at_k": "evaluation.passk",
}
"""Each public name and the submodule that defines it."""

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
