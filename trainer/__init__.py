"""GRPO-family training of causal language models on thinkgym environments."""

from thinkgym.trainer.algorithms import (AGGREGATIONS, ESTIMATORS, KL_KINDS, PRESETS, AlgorithmConfig, aggregate,
                                         group_advantages, informative_groups, kl_penalty, policy_loss, preset,
                                         register_estimator)
from thinkgym.trainer.config import Config, load_config
from thinkgym.trainer.loop import train
from thinkgym.trainer.passk import maj_at_k, pass_at_k

__all__ = ["AGGREGATIONS", "ESTIMATORS", "KL_KINDS", "PRESETS", "AlgorithmConfig", "aggregate", "group_advantages",
           "informative_groups", "kl_penalty", "policy_loss", "preset", "register_estimator", "Config", "load_config",
           "train", "maj_at_k", "pass_at_k"]
