import json
import subprocess
import sys
from pathlib import Path

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
    code, out, _ = run(capsys, "envs", "show", "thinkgym/Math-v0", "-a", "answer_extraction=flexible")
    assert code == 0 and "math_reward(extraction='flexible')" in out


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
    from thinkgym.trainer.algorithm_config import presets_table

    assert presets_table() in (Path(__file__).parents[1] / "README.md").read_text()


# -- bad input is reported without loading torch -----------------------------------------
HEAVY = ("torch", "transformers", "datasets")
LIGHT_ERRORS = [
    (["envs", "show", "thinkgym/Mth-v0"], "unknown environment id 'thinkgym/Mth-v0'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "colour=red"], "unexpected keyword argument 'colour'"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "novalue"], "expected KEY=VALUE"),
    (["envs", "show", "thinkgym/Math-v0", "-a", "size=[1"], "cannot parse the value of size: "),
    (["score", "--env", "thinkgym/Math-v0", "--completions", "/no/such/file.jsonl"], "completions file not found"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Mth-v0"], "unknown environment id"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--arg", "generator=calculus"], "unknown generator"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--k", "1,32"], "k=32 is out of range"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--k", "1,four"], "--k takes comma-separated integers"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--n", "0"], "--n must be >= 1"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--temperature", "0"], "--temperature must be > 0"),
    (["eval", "--model", "tiny", "--env", "thinkgym/Math-v0", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["eval", "--model", "/no/such/model", "--env", "thinkgym/Math-v0"], "model folder not found: /no/such/model"),
    (["train", "--set", "model.path=/no/such/model"], "model folder not found: /no/such/model"),
    (["train", "--nproc", "0"], "--nproc must be >= 1"),
    (["train", "--set", "train.lrr=1"], "unknown config key train.lrr; did you mean train.lr?"),
    (["train", "--set", "train.lr=abc"], "train.lr: expected float, got 'abc'"),
    (["train", "--set", "train.lr=[1"], "train.lr: cannot parse '[1': "),
    (["train", "--set", "train.group_size=0"], "train.group_size must be >= 2"),
    (["train", "--set", "algorithm.preset=trpo"], "algorithm.preset: must be one of"),
    (["train", "--set", "algorithm.estimator=grop"], "algorithm.estimator: got 'grop'"),
    (["train", "--config", "/no/such/config.yaml"], "config file not found: /no/such/config.yaml"),
    (["train", "--config", "broken.yaml"], "broken.yaml: not valid YAML: while parsing a flow mapping, expected ',' "
                                           "or '}', but got ':' at line 2, column 6"),
    (["train", "--set", "envs=[{id: thinkgym/Mth-v0}]"], "unknown environment id 'thinkgym/Mth-v0'"),
    (["train", "--set", "envs=[{id: thinkgym/Math-v0, kwargs: {colour: red}}]"], "unexpected keyword argument 'colour'"),
    (["train", "--nproc", "3"], "must divide by the number of processes (3)"),
]
PROBE = """
import contextlib, io, json, sys
from thinkgym.cli import main
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    print(json.dumps([code, [m for m in {heavy!r} if m in sys.modules]]), flush=True)
"""


def probe(cases: list[list[str]], cwd) -> tuple[list, list[str]]:
    """Run the CLI on each argv in turn in one fresh process in ``cwd``: its
    [exit code, heavy modules imported so far] per case, and its stderr lines."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(cases)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr.splitlines()


def test_bad_input_is_reported_without_importing_torch(tmp_path):
    """Each error above is one line, exit code 2, printed before torch,
    transformers or datasets is imported (they take seconds, tens under load).
    One process runs them in turn, so the first case that imports one is the
    one named."""
    (tmp_path / "broken.yaml").write_text("train: {lr: 1e-4\nsteps: 3\n")
    results, errors = probe([argv for argv, _ in LIGHT_ERRORS], tmp_path)
    assert len(results) == len(errors) == len(LIGHT_ERRORS), errors
    for (argv, message), (code, heavy), error in zip(LIGHT_ERRORS, results, errors):
        assert code == 2 and message in error, (argv, error)
        assert heavy == [], f"{argv} imported {heavy}"


def test_config_modules_and_dry_run_do_not_import_torch():
    root = Path(__file__).parents[1]  # the recipes name their data files from the repository's root, as the README runs them
    shipped = sorted(str(p) for p in (root / "configs").glob("*.yaml"))
    results, _ = probe([["train", "--dry-run"], *(["train", "--dry-run", "--config", p] for p in shipped)], root)
    assert results == [[0, []]] * (1 + len(shipped))
    light = subprocess.run([sys.executable, "-c", "import sys, thinkgym.trainer.config, thinkgym.trainer.plan\n"
                            "from thinkgym.trainer import PRESETS, Config, pass_at_k\n"
                            f"print(*[m for m in {HEAVY!r} if m in sys.modules])"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "", f"the config modules imported {light.stdout}"


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
