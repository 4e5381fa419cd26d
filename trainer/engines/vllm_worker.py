"""The worker side of the ``vllm`` engine's weight updates: a mix-in vLLM adds
to its worker class (``LLM(worker_extension_cls=...)``), called through
``collective_rpc``. Kept apart from ``vllm.py`` so that vLLM imports no more
of thinkgym than this."""

from __future__ import annotations


class WeightLoader:
    """Loads ``(name, tensor)`` pairs named as in a Hugging Face checkpoint into
    the worker's model, in place."""

    def thinkgym_load_weights(self, weights: list) -> None:
        from vllm.platforms import current_platform

        runner = self.model_runner
        if current_platform.is_cpu():
            # The CPU build repacks linear weights after loading (and keeps a processed copy of a
            # tied LM head): its in-place reload writes checkpoint-format tensors and redoes that.
            runner.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
        else:
            runner.model.load_weights(weights=weights)  # as TRL's colocate mode
