"""``thinkgym/Math-v0``: math word problems from a dataset or a generator."""

from __future__ import annotations

import functools
import logging
from typing import Any, Mapping

from thinkgym.envs.core import EnvError, Reward, TextEnv
from thinkgym.envs.generators import make_generator
from thinkgym.envs.tasks import build_tasks, read_rows, renamer
from thinkgym.rewards.countdown import countdown_reward
from thinkgym.rewards.math_answer import EXTRACTIONS, check_gold, extract_answer, math_reward

log = logging.getLogger(__name__)

PROMPT = "{question}\n\nReason step by step, and put your final answer within \\boxed{{}}."
DAPO_HEAD = ("Solve the following math problem step by step. The last line of your response should be of the form "
             "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n")
DAPO_TAIL = '\n\nRemember to put your answer on its own line after "Answer:".'


def _gsm8k(row: Mapping) -> dict:
    """GSM8K: the answer column is a worked solution ending in ``#### 42``."""
    solution = row["answer"]
    if "####" not in solution:
        raise ValueError("GSM8K answer has no '#### <number>' line")
    return {"question": row["question"], "answer": solution.rsplit("####", 1)[1].strip().replace(",", "")}


def _math(row: Mapping) -> dict:
    """MATH / MATH-500: ``problem``; the ``answer`` column, else the last ``\\boxed{}``
    of ``solution``."""
    task = {"question": row["problem"]}
    if "answer" in row and row["answer"] not in (None, ""):
        task["answer"] = str(row["answer"])
    else:
        boxed = extract_answer(row["solution"])
        if boxed is None:
            raise ValueError("solution has no \\boxed{} answer")
        task["answer"] = boxed
    if "unique_id" in row:
        task["id"] = row["unique_id"]
    return task


def _dapo(row: Mapping) -> dict:
    """DAPO-Math-17k: ``prompt`` is chat messages wrapping the problem in DAPO's
    instructions; the gold is ``reward_model.ground_truth``."""
    prompt = row["prompt"]
    text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
    text = text.removeprefix(DAPO_HEAD).removesuffix(DAPO_TAIL)
    task = {"question": text, "answer": str(row["reward_model"]["ground_truth"])}
    extra = row.get("extra_info") or {}
    if "index" in extra:
        task["id"] = extra["index"]
    return task


PRESETS = {"gsm8k": _gsm8k, "math": _math, "dapo": _dapo}


def report_gold(name: str, tasks: list[dict], examples: int = 3) -> list[tuple[str, str]]:
    """Check every gold answer parses; log how many fail, with examples, and return
    the failures as (task id, reason). Such tasks can never be scored correct."""
    bad = [(t["id"], reason) for t in tasks if (reason := check_gold(t["answer"])) is not None]
    if bad:
        shown = "; ".join(f"{i}: {r}" for i, r in bad[:examples])
        log.warning("%s: %d of %d gold answers cannot be parsed and will never score (e.g. %s)",
                    name, len(bad), len(tasks), shown)
    return bad


def _math_accuracy(answer_extraction: str):
    """The accuracy reward for an answer extraction mode of :data:`EXTRACTIONS`:
    ``math_reward`` itself for ``"strict"``, else a picklable partial of it (rewards
    are scored in worker processes). Raises EnvError naming the modes otherwise."""
    if answer_extraction not in EXTRACTIONS:
        raise EnvError(f"unknown answer_extraction {answer_extraction!r}; choose one of {list(EXTRACTIONS)}")
    if answer_extraction == "strict":
        return math_reward
    return functools.partial(math_reward, extraction=answer_extraction)


def make_math_env(source: str | list | None = None, *, preset: str | None = None, columns: Mapping[str, str] | None = None,
                  split: str = "train", generator: str = "arithmetic", size: int = 100_000, seed: int = 0,
                  difficulty: Mapping[str, Any] | None = None, prompt: str = PROMPT, answer_extraction: str = "strict",
                  **env_kwargs: Any) -> TextEnv:
    """Math tasks from ``source`` (file, hub name or rows) or, when no source is
    given, from the procedural ``generator``.

    Args:
        preset: a dataset layout: ``"gsm8k"``, ``"math"`` (MATH, MATH-500) or
            ``"dapo"`` (DAPO-Math-17k). Without one, rows need ``question`` and
            ``answer`` columns, renamed by ``columns={"question": "problem", ...}``.
        generator: ``arithmetic``, ``linear_equation``, ``fraction_arithmetic`` or
            ``countdown`` (scored by ``countdown_reward``); ``difficulty`` holds its knobs.
        answer_extraction: how ``math_reward`` finds the final answer: ``"strict"``
            (``\\boxed{}`` or ``<answer>``) or ``"flexible"`` (also "the answer is
            105" or the last number); countdown takes ``"strict"`` only.

    The env's ``answer_extraction`` attribute holds the mode (None for countdown,
    which is not scored by ``math_reward``) and ``gold_failures`` the gold answers
    that do not parse, as (task id, reason).
    """
    if source is None and generator == "countdown":
        return _countdown_env(size, seed, difficulty, prompt, answer_extraction, env_kwargs)
    accuracy = _math_accuracy(answer_extraction)
    if source is None:
        tasks = make_generator(generator, size=size, seed=seed, **dict(difficulty or {}))
        env = TextEnv(tasks, [Reward("accuracy", accuracy)], prompt=prompt, **env_kwargs)
        env.gold_failures, env.answer_extraction = [], answer_extraction
        return env
    if preset is not None and preset not in PRESETS:
        raise EnvError(f"unknown math preset {preset!r}; choose one of {sorted(PRESETS)}")
    if preset is not None and columns:
        raise EnvError("give either a preset or a column mapping, not both")
    name, rows = read_rows(source, split)
    convert = PRESETS[preset] if preset else renamer(columns, required=("question", "answer"))
    tasks = build_tasks(name, rows, convert, id_prefix="math")
    for task in tasks:
        task["answer"] = str(task["answer"])
    env = TextEnv(tasks, [Reward("accuracy", accuracy)], prompt=prompt, **env_kwargs)
    env.gold_failures, env.answer_extraction = report_gold(name, tasks), answer_extraction
    return env


def _countdown_env(size: int, seed: int, difficulty: Mapping[str, Any] | None, prompt: str, answer_extraction: str,
                   env_kwargs: dict) -> TextEnv:
    """Countdown tasks scored by ``countdown_reward``, which reads its own answer format:
    an ``answer_extraction`` other than ``"strict"`` is an EnvError."""
    if answer_extraction != "strict":
        raise EnvError(f"answer_extraction={answer_extraction!r} does not apply to the countdown generator, "
                       "which countdown_reward scores; leave it \"strict\"")
    tasks = make_generator("countdown", size=size, seed=seed, **dict(difficulty or {}))
    env = TextEnv(tasks, [Reward("accuracy", countdown_reward)], prompt="{question}" if prompt == PROMPT else prompt,
                  **env_kwargs)
    env.gold_failures, env.answer_extraction = [], None
    return env
