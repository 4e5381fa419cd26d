"""``thinkgym/Math-v0``: math word problems from a dataset or a generator."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from thinkgym.envs.core import EnvError, Reward, TextEnv
from thinkgym.envs.generators import make_generator
from thinkgym.envs.tasks import build_tasks, read_rows, renamer
from thinkgym.rewards.countdown import countdown_reward
from thinkgym.rewards.math_answer import check_gold, extract_answer, math_reward

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


def make_math_env(source: str | list | None = None, *, preset: str | None = None, columns: Mapping[str, str] | None = None,
                  split: str = "train", generator: str = "arithmetic", size: int = 100_000, seed: int = 0,
                  difficulty: Mapping[str, Any] | None = None, prompt: str = PROMPT, **env_kwargs: Any) -> TextEnv:
    """Math tasks from ``source`` (file, hub name or rows) or, when no source is
    given, from the procedural ``generator``.

    Args:
        preset: a dataset layout: ``"gsm8k"``, ``"math"`` (MATH, MATH-500) or
            ``"dapo"`` (DAPO-Math-17k). Without one, rows need ``question`` and
            ``answer`` columns, renamed by ``columns={"question": "problem", ...}``.
        generator: ``arithmetic``, ``linear_equation``, ``fraction_arithmetic`` or
            ``countdown`` (scored by ``countdown_reward``); ``difficulty`` holds its knobs.
    """
    if source is None:
        tasks = make_generator(generator, size=size, seed=seed, **dict(difficulty or {}))
        accuracy = countdown_reward if generator == "countdown" else math_reward
        if generator == "countdown":
            prompt = "{question}" if prompt == PROMPT else prompt
        env = TextEnv(tasks, [Reward("accuracy", accuracy)], prompt=prompt, **env_kwargs)
        env.gold_failures = []
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
    env = TextEnv(tasks, [Reward("accuracy", math_reward)], prompt=prompt, **env_kwargs)
    env.gold_failures = report_gold(name, tasks)
    return env
