"""The critic of PPO: a value head on a causal LM's decoder.

``V(s_t)`` is read from the decoder's hidden state that predicts completion
token ``t`` (the state after the prompt and the first ``t`` completion tokens),
the same positions :func:`~thinkgym.trainer.models.logprobs.token_logprobs` reads the
policy's next-token distribution from, so values, log-probs and rewards line up
token for token. The critic is a model of its own (its decoder starts as a copy
of the policy's, or of a given checkpoint) with its own optimizer.

A critic checkpoint is a Hugging Face base-model folder (``AutoModel``) plus
``value_head.pt``; initialising from a policy checkpoint (a causal LM) takes its
decoder and a fresh head.

With ``critic.shared_trunk`` the head sits on the policy's own decoder instead:
:func:`attach_value_head` makes it a submodule of the policy, so it joins the
policy's optimizer, DDP and FSDP, and the policy's training forward
(:class:`~thinkgym.trainer.distributed.TokenLogprobs`) returns values from the
same decoder pass. Its checkpoint is ``value_head.pt`` alone.
"""

from __future__ import annotations

from pathlib import Path

import torch

from thinkgym.trainer.models.builtin import ModelLoadError, check_model_path
from thinkgym.trainer.models.logprobs import completion_states
from thinkgym.trainer.models.policy import DTYPES

VALUE_HEAD = "value_head.pt"
SHARED_HEAD = "value_head"
"""The attribute of a policy that carries a value head sharing its trunk (``critic.shared_trunk``)."""


class Critic(torch.nn.Module):
    """``forward(prompt_ids, prompt_mask, completion_ids, completion_mask) -> [N, T]``
    values of the completion tokens' states, 0 on padding (float32)."""

    def __init__(self, trunk, value_head: torch.nn.Linear):
        super().__init__()
        self.trunk, self.value_head = trunk, value_head

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        hidden = completion_states(self.trunk, prompt_ids, prompt_mask, completion_ids, completion_mask)
        return values_of(self.value_head, hidden, completion_mask)

    def save(self, folder: Path, weights: dict | None = None) -> None:
        """Write the trunk (``weights``: a full state dict of this module, when it
        holds only FSDP shards) and the head to ``folder``."""
        if weights is None:
            weights = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        trunk = {k.removeprefix("trunk."): v for k, v in weights.items() if k.startswith("trunk.")}
        self.trunk.save_pretrained(folder, state_dict=trunk)
        save_value_head({k.removeprefix("value_head."): v for k, v in weights.items()
                         if k.startswith("value_head.")}, folder)


def load_critic(path: str, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> Critic:
    """The critic from a critic checkpoint (a base model and ``value_head.pt``), or a
    new head (seeded, small normal weights as in OpenRLHF) on the decoder of a
    causal-LM checkpoint, such as the policy's."""
    from transformers import AutoModel

    local = check_model_path(path)
    # Building the modules draws random numbers (their default init); a run's must depend on its seed only.
    with torch.random.fork_rng():
        try:
            trunk = AutoModel.from_pretrained(str(local) if local.exists() else path, dtype=DTYPES[dtype])
        except OSError as exc:
            raise ModelLoadError(f"cannot load critic {path!r}: {str(exc).splitlines()[0]}") from None
        head = torch.nn.Linear(trunk.config.hidden_size, 1, dtype=DTYPES[dtype])
    saved = local / VALUE_HEAD
    if saved.is_file():
        load_value_head(head, saved)
    else:
        init_value_head(head, seed)
    return Critic(trunk, head).to(device)


def values_of(value_head: torch.nn.Linear, hidden: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` float32 values of the completion states ``hidden``, 0 on padding."""
    return value_head(hidden).squeeze(-1).float() * completion_mask


def init_value_head(head: torch.nn.Linear, seed: int) -> None:
    """Small normal weights (std 1 / (hidden + 1), as OpenRLHF), zero bias, drawn from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) / (head.in_features + 1))
        head.bias.zero_()


def load_value_head(head: torch.nn.Linear, path: Path) -> None:
    """Load a ``value_head.pt`` into ``head``, checking that it fits."""
    state = torch.load(path, weights_only=True)
    if state["weight"].shape != head.weight.shape:
        raise ModelLoadError(f"{path}: value head of shape {tuple(state['weight'].shape)} does not fit "
                             f"a decoder of hidden size {head.in_features}")
    head.load_state_dict(state)


def attach_value_head(policy, head: torch.nn.Linear) -> None:
    """Make ``head`` a submodule of ``policy``: a value head sharing its trunk."""
    policy.add_module(SHARED_HEAD, head)


def shared_value_head(policy) -> torch.nn.Linear | None:
    """The value head :func:`attach_value_head` put on ``policy``, or None."""
    return policy._modules.get(SHARED_HEAD)


def shared_critic(policy) -> Critic:
    """A :class:`Critic` made of the policy's decoder and its shared head (the same
    modules, not copies), to value rollouts outside the training forward."""
    return Critic(policy.get_decoder(), shared_value_head(policy))


def attach_shared_head(policy, saved: Path | None, dtype: str, seed: int, device: str) -> None:
    """Put a value head on ``policy``'s decoder (:func:`attach_value_head`): the
    one in ``saved`` (a ``value_head.pt``) when resuming, else a new one drawn from ``seed``."""
    hidden = policy.get_output_embeddings().weight.shape[1]
    with torch.random.fork_rng():  # building the module draws numbers; the run's must depend on its seed only
        head = torch.nn.Linear(hidden, 1, dtype=DTYPES[dtype])
    if saved:
        load_value_head(head, saved)
    else:
        init_value_head(head, seed)
    attach_value_head(policy, head.to(device))


def save_value_head(weights: dict, folder: Path) -> None:
    """Write a value head's weights as ``folder/value_head.pt`` (``folder`` made if needed)."""
    folder.mkdir(exist_ok=True)
    torch.save(weights, folder / VALUE_HEAD)


def split_shared_head(policy, weights: dict | None) -> tuple[dict | None, dict]:
    """(the policy's weights to save as a causal LM, the shared head's weights).
    ``weights`` is a gathered state dict, or None where ``policy`` holds whole
    tensors; without a shared head it comes back as it is, with ``{}``."""
    if shared_value_head(policy) is None:
        return weights, {}
    if weights is None:
        weights = {k: v.detach() for k, v in policy.state_dict().items()}
    prefix = SHARED_HEAD + "."
    head = {k.removeprefix(prefix): v.cpu() for k, v in weights.items() if k.startswith(prefix)}
    return {k: v for k, v in weights.items() if not k.startswith(prefix)}, head
