"""An engine sampling from a frozen copy of the policy, so that rollouts can be
sampled while the policy trains (``train.off_policy_steps: 1``). Like the vllm
engine, it holds weights of its own: it counts how many optimizer steps they lag
behind the policy's and loads the policy's when asked."""

from __future__ import annotations

import copy

import torch

from thinkgym.trainer.sampling import Sampling


class SnapshotEngine:
    """``engine`` (hf or static) built by ``make(copy)`` over a copy of ``model``."""

    def __init__(self, model, make):
        self.copy = copy.deepcopy(model).eval().requires_grad_(False)
        self.engine = make(self.copy)
        self.tokenizer, self.reports_logprobs = self.engine.tokenizer, self.engine.reports_logprobs
        self.lag = 0  # optimizer steps the copy is behind the policy

    def generate(self, prompts, n, sampling: Sampling, add_special_tokens=True):
        return self.engine.generate(prompts, n, sampling, add_special_tokens)

    def policy_stepped(self) -> bool:
        """Count an optimizer step of the policy; always time to :meth:`load_weights`
        (a copy in memory costs little to refresh)."""
        self.lag += 1
        return True

    @torch.no_grad()
    def load_weights(self, model) -> None:
        """Copy ``model``'s parameters, matched by name (whole tensors: under FSDP,
        call it where they are gathered)."""
        params = dict(model.named_parameters())
        for name, param in self.copy.named_parameters():
            param.copy_(params[name])
        self.lag = 0
