"""Sampling a model on environment tasks and scoring the samples.

Used for the trainer's before/after held-out accuracy and by ``thinkgym eval``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from thinkgym.trainer.evaluation.options import BATCH_SIZE
from thinkgym.trainer.sampling import Sampling
from thinkgym.trainer.engines import RolloutEngine


def render_prompts(env, tokenizer, tasks) -> tuple[list[str], bool]:
    """Prompt strings for ``tasks``; chat messages go through the tokenizer's chat
    template. Each ends with the env's ``prefill``, which the completions continue.
    Returns (prompts, is_chat)."""
    prompts = [env.prompt_of(t) for t in tasks]
    chat = bool(prompts) and isinstance(prompts[0], list)
    if chat:
        if tokenizer.chat_template is None:
            raise ValueError("a chat-style environment needs a tokenizer with a chat template; "
                             "use style: text or r1_zero for base models")
        prompts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    return [p + env.prefill for p in prompts], chat


@dataclass
class Samples:
    """``n`` scored samples for each of ``tasks`` (task-major order)."""

    tasks: list[dict]
    n: int
    texts: list[str]
    scored: list           # thinkgym.envs.Scored per sample
    lengths: torch.Tensor  # completion tokens per sample
    truncated: torch.Tensor

    def correct(self, env) -> list[bool]:
        """Per sample, whether it solves its task (:meth:`TextEnv.is_correct`)."""
        return [env.unwrapped.is_correct(s.rewards) for s in self.scored]


def batches(tasks: Sequence[dict], n: int, batch_size: int) -> Iterator[tuple[Sequence[dict], int]]:
    """``(tasks, samples per task)`` pieces that together sample ``n`` completions
    of each task, task-major, at most ``batch_size`` sequences a piece:
    ``batch_size // n`` whole tasks at a time, or, when ``n > batch_size``, one
    task's samples ``batch_size`` at a time (each prompt's samples stay in one
    ``generate`` call where they fit, so an engine encodes the prompt once)."""
    if n <= batch_size:
        per_batch = batch_size // n
        for start in range(0, len(tasks), per_batch):
            yield tasks[start:start + per_batch], n
    else:
        for task in tasks:
            for start in range(0, n, batch_size):
                yield [task], min(batch_size, n - start)


@torch.no_grad()
def sample_and_score(engine: RolloutEngine, env, tasks: Sequence[dict], n: int, sampling: Sampling,
                     batch_size: int = BATCH_SIZE, workers: int | None = None, desc: str = "sampling",
                     progress: bool = True) -> Samples:
    """Generate ``n`` completions per task with ``engine``, at most ``batch_size``
    sequences at a time (:func:`batches`), and score each batch with ``env`` as
    it is done. With ``progress``, a bar on stderr counts the tasks done, with
    the generation throughput (``tok/s``) and the time left."""
    base = env.unwrapped
    texts, scored, lengths, truncated = [], [], [], []
    tokens, generating = 0, 0.0
    with tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress, dynamic_ncols=True) as bar:
        for chunk, k in batches(tasks, n, batch_size):
            prompts, chat = render_prompts(base, engine.tokenizer, chunk)
            start = time.perf_counter()
            rollouts = engine.generate(prompts, k, sampling, add_special_tokens=not chat)
            generating += time.perf_counter() - start
            scored += base.score_many(rollouts.texts, [task for task in chunk for _ in range(k)], workers=workers)
            texts += rollouts.texts
            lengths.append(rollouts.completion_mask.sum(1))
            truncated.append(rollouts.truncated)
            tokens += int(lengths[-1].sum())
            bar.set_postfix({"tok/s": f"{tokens / max(generating, 1e-9):.1f}"}, refresh=False)
            bar.update(len(texts) // n - bar.n)
    return Samples(list(tasks), n, texts, scored, torch.cat(lengths), torch.cat(truncated))


def held_out_accuracy(run, progress: bool = True) -> dict[str, float]:
    """Accuracy (:meth:`TextEnv.is_correct`) of one sample of the policy per held-out
    task (the first ``output.eval_tasks`` of each of ``run.eval_envs``), ``run``
    a :class:`~thinkgym.trainer.run.Run`, on every rank."""
    run.policy.model.eval()
    result = {}
    for env in run.eval_envs:
        base = env.unwrapped
        name = base.spec.id if base.spec else "env"
        tasks = [base.tasks[i] for i in range(min(run.config.output.eval_tasks, len(base.tasks)))]
        samples = sample_and_score(run.policy.engine, env, tasks, 1, run.config.sampling, workers=run.workers,
                                   desc=f"held-out {name}", progress=progress)
        result[name] = sum(samples.correct(base)) / len(tasks)
    return result


class HeldOutAccuracy:
    """For an objective (with a ``run``) whose held-out score is the policy's
    accuracy on the envs' held-out tasks: every one but the reward model's."""

    def evaluate(self, progress: bool) -> dict[str, float]:
        return held_out_accuracy(self.run, progress)
