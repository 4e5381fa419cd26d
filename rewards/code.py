"""Reward for code: run the completion's program against tests in the sandbox.

    >>> code_reward("```python\\ndef add(a, b):\\n    return a + b\\n```", "assert add(1, 2) == 3")
    Score(1.0, 'passed')
"""

from __future__ import annotations

from typing import Sequence

from thinkgym.rewards.sandbox import Job, SandboxPool, default_pool
from thinkgym.rewards.score import Score

MODES = ("all", "fraction")


def extract_code(completion: str) -> str | None:
    """The last fenced block (```python, ```py or a bare ```), else the whole completion.

    None when there is no code at all (an empty or blank completion). Linear time:
    fences are found line by line, never by a backtracking regex.
    """
    lines = completion.split("\n")
    blocks, start = [], None
    for i, line in enumerate(lines):
        fence = line.strip()
        if start is None and fence.startswith("```") and fence[3:].strip().lower() in ("", "python", "py", "python3"):
            start = i + 1
        elif start is not None and fence == "```":
            blocks.append((start, i))
            start = None
    code = "\n".join(lines[blocks[-1][0]:blocks[-1][1]]) if blocks else completion
    return code if code.strip() else None


def _score(result, mode: str) -> Score:
    if mode == "fraction":
        return Score(result.passed / result.total if result.total else 0.0, result.reason, result.infra_error)
    return Score(1.0 if result.ok else 0.0, result.reason, result.infra_error)


def code_rewards(completions: Sequence[str], tests: Sequence[str], entry_point: Sequence[str | None] | None = None,
                 mode: str | Sequence[str] = "all", pool: SandboxPool | None = None) -> list[Score]:
    """:func:`code_reward` for a batch, run in parallel on ``pool`` (default: the
    shared one). ``tests`` and ``entry_point`` are per-row lists; ``mode`` is one
    mode or a per-row list. This is ``code_reward.batch``, which batch scoring
    (``score_batch``, ``as_trl``, environments) uses instead of a process pool."""
    n = len(completions)
    entry_point = list(entry_point) if entry_point is not None else [None] * n
    modes = [mode] * n if isinstance(mode, str) else list(mode)
    for name, column in (("test suites", tests), ("entry points", entry_point), ("modes", modes)):
        if len(column) != n:
            raise ValueError(f"{n} completions but {len(column)} {name}")
    for m in set(modes):
        if m not in MODES:
            raise ValueError(f"unknown code_reward mode {m!r}; expected one of {MODES}")
    codes = [extract_code(c) if isinstance(c, str) else None for c in completions]
    jobs = [Job(code, t, ep) for code, t, ep in zip(codes, tests, entry_point) if code is not None]
    results = iter((pool or default_pool()).run_many(jobs))
    return [_score(next(results), m) if code is not None else Score(0.0, "no_code_found") for code, m in zip(codes, modes)]


def code_reward(completion: str, tests: str, entry_point: str | None = None, mode: str = "all",
                pool: SandboxPool | None = None) -> Score:
    """1.0 iff the completion's code passes every test (``mode="all"``), or the fraction of
    test cases it passes (``mode="fraction"``); the Score's reason says why. When the
    sandbox itself fails (after retries), the Score is 0.0 with ``infra_error`` set and
    a reason ``"sandbox_error: ..."``: no verdict on the completion.

    ``tests`` is Python with asserts; HumanEval-style tests (``def check(candidate)``)
    need ``entry_point``, the name of the function they check. Never raises on any
    completion; raises ValueError if ``tests`` themselves do not parse.
    """
    return code_rewards([completion], [tests], [entry_point], mode, pool)[0]


code_reward.batch = code_rewards
