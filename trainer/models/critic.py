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
"""

from __future__ import annotations

from pathlib import Path

import torch

from thinkgym.trainer.models.builtin import ModelLoadError, check_model_path
from thinkgym.trainer.models.policy import DTYPES

VALUE_HEAD = "value_head.pt"


class Critic(torch.nn.Module):
    """``forward(prompt_ids, prompt_mask, completion_ids, completion_mask) -> [N, T]``
    values of the completion tokens' states, 0 on padding (float32)."""

    def __init__(self, trunk, value_head: torch.nn.Linear):
        super().__init__()
        self.trunk, self.value_head = trunk, value_head

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        input_ids = torch.cat([prompt_ids, completion_ids], 1)
        attention_mask = torch.cat([prompt_mask, completion_mask], 1)
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        t = completion_ids.shape[1]
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False).last_hidden_state[:, -t - 1:-1]
        values = self.value_head(hidden).squeeze(-1).float()
        return values * completion_mask

    def save(self, folder: Path, weights: dict | None = None) -> None:
        """Write the trunk (``weights``: a full state dict of this module, when it
        holds only FSDP shards) and the head to ``folder``."""
        if weights is None:
            weights = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        trunk = {k.removeprefix("trunk."): v for k, v in weights.items() if k.startswith("trunk.")}
        self.trunk.save_pretrained(folder, state_dict=trunk)
        torch.save({k.removeprefix("value_head."): v for k, v in weights.items() if k.startswith("value_head.")},
                   folder / VALUE_HEAD)


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
        hidden = trunk.config.hidden_size
        head = torch.nn.Linear(hidden, 1, dtype=DTYPES[dtype])
    saved = local / VALUE_HEAD
    if saved.is_file():
        state = torch.load(saved, weights_only=True)
        if state["weight"].shape != head.weight.shape:
            raise ModelLoadError(f"{saved}: value head of shape {tuple(state['weight'].shape)} does not fit "
                                 f"a decoder of hidden size {hidden}")
        head.load_state_dict(state)
    else:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) / (hidden + 1))
            head.bias.zero_()
    return Critic(trunk, head).to(device)
