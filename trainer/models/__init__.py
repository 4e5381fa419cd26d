"""The models of a run, by role: the policy and its reference (``policy.py``),
PPO's critic (``critic.py``), the built-in models made on first use
(``builtin.py``: the tiny model of ``tiny.py``, SmolLM2 from ``gguf.py``), and
the per-token log-probs every loss reads (``logprobs.py``).

Importing this package (or ``builtin``) does not import torch: the CLI checks a
model path before torch loads."""
