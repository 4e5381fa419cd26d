"""The shipped recipes load and validate; tiny.yaml is exactly the default run."""

import dataclasses
from pathlib import Path

import pytest

from thinkgym.cli import main
from thinkgym.trainer.config import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_tiny_yaml_is_the_default():
    tiny = Path(__file__).parents[1] / "configs" / "tiny.yaml"
    assert dataclasses.asdict(load_config(str(tiny))) == dataclasses.asdict(load_config(None))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipes_dry_run(path, capsys):
    assert main(["train", "--config", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "algorithm" in out and "tokens/step" in out


def test_recipe_names():
    assert {p.name for p in CONFIGS} >= {"tiny.yaml", "r1_zero_qwen_math.yaml", "dapo.yaml", "dr_grpo.yaml", "countdown.yaml"}


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown config key train.lrr; did you mean train.lr?"),
    ("train.lr=fast", "train.lr: expected float, got 'fast'"),
    ("train.group_size=1", "train.group_size must be >= 2"),
    ("train.mini_batch_size=7", "must divide prompts_per_step x group_size"),
    ("algorithm.preset=trpo", "algorithm.preset: must be one of"),
    ("envs=[{id: thinkgym/Mth-v0}]", "did you mean 'thinkgym/Math-v0'"),
    ("envs=[{id: thinkgym/Math-v0, kwargs: {source: missing.jsonl}}]", "dataset file not found: missing.jsonl"),
    ("envs=[{id: thinkgym/Math-v0, kwargs: {colour: red}}]", "unexpected keyword argument 'colour'"),
])
def test_bad_config_is_one_line_exit_2(override, message, capsys):
    assert main(["train", "--dry-run", "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_model_and_config_files(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code = main(["train", "--set", f"model.path={tmp_path / 'empty'}", "--set", f"output.dir={tmp_path / 'run'}"])
    assert code == 2 and "is not a Hugging Face checkpoint" in capsys.readouterr().err


def test_bad_dataset_rows_stop_training_before_the_run_dir_exists(tmp_path, capsys, micro_model):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n')
    out = tmp_path / "run"
    code = main(["train", "--set", f"model.path={micro_model}", "--set", f"output.dir={out}",
                 "--set", f"envs=[{{id: thinkgym/Math-v0, kwargs: {{source: {data}}}}}]"])
    assert code == 2 and "row 1 has no column 'answer'" in capsys.readouterr().err
    assert not out.exists()


def test_public_trainer_api():
    import thinkgym.trainer as trainer
    from thinkgym.trainer import advantages, algorithm_config, run

    assert set(trainer.__all__) <= set(dir(trainer))
    assert all(getattr(trainer, name) is not None for name in trainer.__all__)  # each loads from its module
    assert trainer.PRESETS is algorithm_config.PRESETS and trainer.group_advantages is advantages.group_advantages
    assert set(trainer.OBJECTIVES) == set(algorithm_config.OBJECTIVES) and trainer.OBJECTIVES is run.OBJECTIVES
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trainer.nope
    assert trainer.pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert callable(trainer.group_advantages) and callable(trainer.policy_loss) and callable(trainer.train)
