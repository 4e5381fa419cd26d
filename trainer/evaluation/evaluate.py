"""``thinkgym eval``: pass@k, maj@k and reward statistics of a model on an environment.

A run samples ``n`` completions for each of the environment's first ``limit``
tasks, scores them with the environment, and reports:

- pass@k, the unbiased estimator of Chen et al. 2021 over the ``n`` samples; a
  sample is correct when the env says so (:meth:`TextEnv.is_correct`: full marks
  on its first reward component, the accuracy);
- maj@k, majority voting over the samples' extracted answers, estimated without
  bias over the ``n`` samples (:func:`~thinkgym.trainer.evaluation.passk.maj_at_k`). It
  applies to environments scored by ``math_reward`` only: their answers are
  extracted with ``extract_answer``, in the env's ``answer_extraction`` mode
  (strict or flexible), and grouped by ``canonical_answer``. Code, JSON and
  countdown answers have many correct forms and no canonical one to vote on, so
  there maj@k is reported as not applicable (``null``);
- the format rate of a math env: the fraction of completions that give a strict
  answer (a ``\\boxed{}`` or an ``<answer>`` tag), whatever the env's mode, so a
  flexible eval still shows how often the model follows the format;
- the mean of each reward component and of the total reward, the mean completion
  length in tokens, and the fraction of completions cut at ``max_new_tokens``.

Two samples vote together when their canonical answers are equal *and* the
environment scored them alike: ``canonical_answer`` only groups answers that
tend to be equal, and the environment's verdict is the one that counts, so a
group never mixes correct and incorrect samples. A sample without an extracted
answer, or whose answer has no canonical form, does not vote.

Samples are generated ``batch_size`` sequences at a time, with a progress bar
on stderr, on ``threads`` torch threads (as ``train.cpu_threads``).

Files written to the output folder: ``samples.jsonl`` (one row per completion)
and ``summary.json`` (the options, the answer extraction mode, and every number
the table shows).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import torch
import transformers

from thinkgym.rewards.math_answer import canonical_answer, extract_answer, math_reward
from thinkgym.trainer.evaluation.options import EvalError, EvalOptions, check_options
from thinkgym.trainer.evaluation.samples import Samples, render_prompts, sample_and_score
from thinkgym.trainer.run import set_cpu_threads
from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.evaluation.passk import maj_at_k, pass_at_k
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.engines import make_engine
from thinkgym.trainer.engines.vllm import VLLMEngine

GENERATOR_LIMIT = 100
"""Tasks evaluated by default on a procedural generator (``Math-v0`` without a
dataset has 100,000): its first this many. Datasets are evaluated whole."""


def select_tasks(base, limit: int | None) -> list[dict]:
    """The env's first ``limit`` tasks, in order. Without a limit: all tasks of a
    dataset, the first :data:`GENERATOR_LIMIT` of a procedural generator."""
    if limit is None:
        limit = GENERATOR_LIMIT if hasattr(base.tasks, "by_id") else len(base.tasks)
    return [base.tasks[i] for i in range(min(limit, len(base.tasks)))]


def env_extraction(base) -> str | None:
    """The env's answer extraction mode (``"strict"`` or ``"flexible"``) when its
    accuracy is ``math_reward``'s, else None. Math-v0 envs say so in their
    ``answer_extraction`` attribute; an env of one's own built on ``math_reward``
    itself extracts strictly."""
    extraction = getattr(base, "answer_extraction", None)
    if extraction is None and base.rewards[0].fn is math_reward:
        return "strict"
    return extraction


def votes_apply(base) -> bool:
    """Whether maj@k applies: the env's accuracy is ``math_reward``, whose answers
    ``extract_answer`` finds and ``canonical_answer`` groups."""
    return env_extraction(base) is not None


def vote_keys(answers: Sequence[str | None], correct: Sequence[bool]) -> list[Hashable | None]:
    """The vote of each sample: ``(canonical answer, correct)``, or None when the
    sample has no answer or its answer no canonical form. Canonical forms are
    computed once per distinct answer (each takes a sympy call)."""
    forms: dict[str, str | None] = {}
    for answer in answers:
        if answer is not None and answer not in forms:
            forms[answer] = canonical_answer(answer)
    return [None if a is None or forms[a] is None else (forms[a], ok) for a, ok in zip(answers, correct)]


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def summarize(correct: Sequence[Sequence[bool]], votes: Sequence[Sequence[Hashable | None]] | None,
              ks: Sequence[int], rewards: dict[str, Sequence[float]], totals: Sequence[float],
              lengths: Sequence[int], truncated: Sequence[bool], formatted: Sequence[bool] | None = None) -> dict:
    """The metrics of an eval, from per-task samples (pure; no model involved).

    Args:
        correct: per task, ``n`` bools (is each sample correct).
        votes: per task, ``n`` vote keys for maj@k (equal keys are one answer and
            must agree on correctness; None abstains), or None when maj@k does not
            apply to the env.
        ks: the k values, each ``<= n``.
        rewards: each reward component's value per sample (flat, task-major).
        totals: the total (weighted) reward per sample.
        lengths, truncated: completion tokens and cut-off flag per sample.
        formatted: per sample, whether it gives a strict answer (flat), or None
            when the env extracts no math answers.

    Returns ``pass@k`` and ``maj@k`` (``{str(k): mean over tasks}``; ``maj@k`` is
    None when it does not apply), ``reward`` (``"total"`` and each component's
    mean), ``format_rate`` (None without ``formatted``), ``length_mean`` and
    ``truncated_fraction``.
    """
    def per_task_mean(metric: Callable[[int], list[float]]) -> dict[str, float]:
        return {str(k): mean(metric(k)) for k in ks}

    pass_k = per_task_mean(lambda k: [pass_at_k(len(c), sum(c), k) for c in correct])
    maj_k = None
    if votes is not None:
        maj_k = per_task_mean(lambda k: [maj_at_k(v, list(c), k) for v, c in zip(votes, correct)])
    return {"pass@k": pass_k, "maj@k": maj_k,
            "reward": {"total": mean(totals), **{name: mean(values) for name, values in rewards.items()}},
            "format_rate": None if formatted is None else mean([float(f) for f in formatted]),
            "length_mean": mean(lengths), "truncated_fraction": mean([float(t) for t in truncated])}


def summary_rows(summary: dict) -> list[tuple[str, float | str]]:
    """(metric, value) rows for the printed table."""
    rows: list[tuple[str, float | str]] = [(f"pass@{k}", v) for k, v in summary["pass@k"].items()]
    if summary["maj@k"] is None:
        rows.append(("maj@k", "n/a (no answer extraction for this env)"))
    else:
        rows += [(f"maj@{k}", v) for k, v in summary["maj@k"].items()]
    rows += [(f"reward: {name}", v) for name, v in summary["reward"].items()]
    if summary["format_rate"] is not None:
        rows.append(("format rate (boxed/<answer>)", summary["format_rate"]))
    rows += [("length (tokens)", summary["length_mean"]), ("truncated", summary["truncated_fraction"])]
    return rows


def extracted_answers(texts: Sequence[str], extraction: str | None) -> tuple[list[str | None], list[bool] | None]:
    """(each completion's answer in the env's ``extraction`` mode, whether each gives a
    strict answer); all None and None when the env extracts no math answers."""
    if extraction is None:
        return [None] * len(texts), None
    return [extract_answer(t, extraction) for t in texts], [extract_answer(t) is not None for t in texts]


def default_out_dir(env_id: str) -> Path:
    """``runs/eval-<env name>-<timestamp>`` (``thinkgym/Math-v0`` -> ``Math-v0``)."""
    return Path("runs") / f"eval-{env_id.rsplit('/', 1)[-1]}-{datetime.now():%Y%m%d-%H%M%S}"


def sample_rows(samples: Samples, answers: list[str | None], votes: list[Hashable | None] | None) -> list[dict]:
    """One ``samples.jsonl`` row per completion, task-major."""
    rows, n = [], samples.n
    lengths, truncated = samples.lengths.tolist(), samples.truncated.tolist()
    for i, (text, result) in enumerate(zip(samples.texts, samples.scored)):
        vote = votes[i] if votes is not None else None
        rows.append({"task_id": samples.tasks[i // n]["id"], "sample": i % n, "completion": text,
                     "reward": result.reward, "rewards": result.rewards, "reasons": result.reasons, "answer": answers[i],
                     "canonical": vote[0] if vote is not None else None, "length": lengths[i],
                     "truncated": truncated[i]})
    return rows


def load_checked(options: EvalOptions, base, tasks: list[dict], log: Callable[[str], None]):
    """(model, tokenizer, resolved path); errors name the missing folder or an env
    whose chat prompts the tokenizer cannot render."""
    path = resolve_model(options.model, log)
    model, tokenizer = load_model(path, options.dtype, options.device)
    try:
        render_prompts(base, tokenizer, tasks[:1])
    except ValueError as exc:  # a chat-style env and a tokenizer without a chat template
        raise EvalError(f"{options.env}: {exc}") from None
    return model.eval(), tokenizer, path


def evaluate_model(options: EvalOptions, env, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Run the eval described by ``options`` on ``env`` and write ``samples.jsonl``
    and ``summary.json`` into ``out_dir``. Returns the summary."""
    started = time.perf_counter()
    check_options(options)
    base, n = env.unwrapped, options.n
    tasks = select_tasks(base, options.limit)
    model, tokenizer, path = load_checked(options, base, tasks, log)
    set_cpu_threads(options.threads)  # first: vLLM, in this process, fixes the thread count once it starts
    try:
        engine = make_engine(options.sampling.engine, model, tokenizer, options.sampling, options.seed)
    except ValueError as exc:  # an engine that cannot run this model
        raise EvalError(str(exc).replace("sampling.engine", "--engine")) from None
    torch.manual_seed(options.seed)
    log(f"evaluating {options.model} on {options.env}: {len(tasks)} tasks x {n} samples, "
        f"{options.batch_size} sequences at a time, torch threads: {torch.get_num_threads()}")
    samples = sample_and_score(engine, env, tasks, n, options.sampling, batch_size=options.batch_size,
                               workers=options.workers, desc="eval")
    if isinstance(engine, VLLMEngine):
        engine.close()

    correct = samples.correct(base)
    extraction = env_extraction(base)
    answers, formatted = extracted_answers(samples.texts, extraction)
    votes = vote_keys(answers, correct) if votes_apply(base) else None
    metrics = summarize(correct=[correct[i:i + n] for i in range(0, len(correct), n)],
                        votes=[votes[i:i + n] for i in range(0, len(votes), n)] if votes is not None else None,
                        ks=options.ks, rewards={r.name: [s.rewards[r.name] for s in samples.scored] for r in base.rewards},
                        totals=[s.reward for s in samples.scored], lengths=samples.lengths.tolist(),
                        truncated=samples.truncated.tolist(), formatted=formatted)

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "samples.jsonl").open("w", encoding="utf-8") as f:
        for row in sample_rows(samples, answers, votes):
            f.write(json.dumps(row) + "\n")
    summary = {"model": options.model, "model_path": path, "env": options.env, "answer_extraction": extraction,
               "options": _options_record(options),
               "n": n, "k": list(options.ks), "tasks": len(tasks), **metrics,
               "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                            "transformers": transformers.__version__},
               "wall_s": round(time.perf_counter() - started, 3)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _options_record(options: EvalOptions) -> dict:
    """The options that shape the numbers, for ``summary.json``."""
    record = asdict(options)
    for key in ("model", "env", "n", "ks"):
        record.pop(key)
    record["sampling"].pop("tis_cap")  # a training option
    return record
