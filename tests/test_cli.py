import json
import subprocess
import sys

import pytest

from thinkgym.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_envs_list_and_show(capsys):
    code, out, _ = run(capsys, "envs", "list")
    assert code == 0 and "thinkgym/Math-v0" in out and "thinkgym/Code-v0" in out and "thinkgym/JSON-v0" in out
    code, out, _ = run(capsys, "envs", "show", "thinkgym/Math-v0", "--arg", "generator=countdown", "-a", "style=r1_zero")
    assert code == 0 and "Using the numbers" in out and "Assistant: <think>" in out
    assert "accuracy" in out and "countdown_reward" in out


def test_score_writes_rows_and_summary(capsys, tmp_path):
    completions = tmp_path / "c.jsonl"
    rows = [{"task_id": "arithmetic-0", "completion": "no idea"},
            {"task_id": "arithmetic-1", "completion": "\\boxed{0}"}]
    from thinkgym.envs import make_generator
    gold = make_generator("arithmetic")[2]["answer"]
    rows.append({"task_id": "arithmetic-2", "completion": f"so \\boxed{{{gold}}}"})
    completions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(capsys, "score", "--env", "thinkgym/Math-v0", "--completions", str(completions), "--workers", "1")
    assert code == 0 and "Scored 3 completions" in out and "no_answer_found" in out
    scored = [json.loads(line) for line in (tmp_path / "c.scored.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in scored] == ["arithmetic-0", "arithmetic-1", "arithmetic-2"]
    assert scored[2]["reward"] == 1.0 and scored[0]["reasons"]["accuracy"] == "no_answer_found"


@pytest.mark.parametrize("argv,message", [
    (["envs", "show", "thinkgym/Nope-v0"], "unknown environment id 'thinkgym/Nope-v0'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "generator=calculus"], "unknown generator 'calculus'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "colour=red"], "unexpected keyword argument 'colour'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "novalue"], "expected KEY=VALUE"),
    (["score", "--env", "thinkgym/Math-v0", "--completions", "/no/such/file.jsonl"], "completions file not found"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_malformed_completion_rows(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "arithmetic-0", "completion": "x"}\n{"completion": 5}\n')
    code, _, err = run(capsys, "score", "--env", "thinkgym/Math-v0", "--completions", str(bad))
    assert code == 2 and "bad.jsonl: row 2 needs" in err
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"task_id": "nope-3", "completion": "x"}\n')
    code, _, err = run(capsys, "score", "--env", "thinkgym/Math-v0", "--completions", str(unknown))
    assert code == 2 and "row 1: no task with id 'nope-3'" in err


def test_console_script_and_debug_traceback():
    ok = subprocess.run(["thinkgym", "envs", "list"], capture_output=True, text=True)
    assert ok.returncode == 0 and "thinkgym/Math-v0" in ok.stdout
    debug = subprocess.run([sys.executable, "-m", "thinkgym", "--debug", "envs", "show", "x/Nope-v0"],
                           capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_sandbox_info_reports_the_active_isolation(capsys):
    from thinkgym.rewards.sandbox import isolation_info

    code, out, _ = run(capsys, "sandbox", "info")
    assert code == 0 and isolation_info()["level"] in out


def test_readme_preset_table_is_current():
    from pathlib import Path

    from thinkgym.trainer.algorithms import presets_table

    assert presets_table() in (Path(__file__).parents[1] / "README.md").read_text()


# -- bad input is reported without loading the trainer -------------------------------------
HEAVY = ("torch", "transformers", "datasets", "thinkgym.trainer")
LIGHT_ERRORS = [
    (["envs", "show", "thinkgym/Mth-v0"], "unknown environment id 'thinkgym/Mth-v0'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "colour=red"], "unexpected keyword argument 'colour'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "novalue"], "expected KEY=VALUE"),
    (["score", "--env", "thinkgym/Math-v0", "--completions", "/no/such/file.jsonl"], "completions file not found"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Mth-v0"], "unknown environment id"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--arg", "generator=calculus"], "unknown generator"),
    (["train", "--nproc", "0"], "--nproc must be >= 1"),
]
PROBE = """
import json, sys
from thinkgym.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    print(json.dumps([code, [m for m in {heavy!r} if m in sys.modules]]), flush=True)
"""


def test_bad_input_is_reported_without_importing_torch():
    """Each error above is printed before torch, transformers, datasets or the
    trainer is imported (they take seconds, tens under load). One process runs
    them in turn, so the first case that imports one is the one named."""
    probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps([a for a, _ in LIGHT_ERRORS])],
                           capture_output=True, text=True, timeout=120)
    results = [json.loads(line) for line in probe.stdout.splitlines()]
    errors = probe.stderr.splitlines()
    assert len(results) == len(errors) == len(LIGHT_ERRORS), probe.stderr
    for (argv, message), (code, heavy), error in zip(LIGHT_ERRORS, results, errors):
        assert code == 2 and message in error, (argv, error)
        assert heavy == [], f"{argv} imported {heavy}"


# -- train --------------------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_never_launches(capsys, monkeypatch):
    def launch(*args, **kwargs):
        raise AssertionError(f"a dry run launched {args}")

    monkeypatch.setattr(subprocess, "run", launch)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, out, _ = run(capsys, "train", "--nproc", "2", "--dry-run", "--set", "train.steps=3")
    assert code == 0 and "processes    2 (ddp, 8 prompts each)" in out and "steps        3" in out
    code, _, err = run(capsys, "train", "--nproc", "3", "--dry-run")
    assert code == 2 and "must divide by the number of processes (3)" in err and err.count("\n") == 1
