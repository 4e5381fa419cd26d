"""``thinkgym eval``: the summary on hand-made samples, and end-to-end runs of a micro model.

The micro model is the tiny model after a few pretraining steps (seconds to
build), so its answers are mostly wrong; the end-to-end test checks that the
reported numbers agree with the rows of ``samples.jsonl``, whatever they are.
"""

import itertools
import json
from collections import Counter
from fractions import Fraction

import pytest

from thinkgym import make
from thinkgym.cli import build_parser, main
from thinkgym.envs import Reward, Scored, TextEnv
from thinkgym.rewards.math_answer import extract_answer, math_reward
from thinkgym.trainer.evaluation.samples import Samples, batches, sample_and_score
from thinkgym.trainer.evaluation.options import EvalError, EvalOptions, parse_ks
from thinkgym.trainer.sampling import ENGINE_NAMES, Sampling
from thinkgym.trainer.evaluation.evaluate import (
    default_out_dir, env_extraction, extracted_answers, select_tasks, summarize, summary_rows, vote_keys,
    votes_apply)
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.engines.hf import HFEngine
from thinkgym.trainer.models.tiny import EVAL_SEED, TINY_ENV, make_env


def tiny_env_args() -> list[str]:
    """``--arg`` options for TINY_ENV; values as JSON, which the CLI reads as YAML."""
    return [f"--arg={key}={json.dumps(value)}" for key, value in TINY_ENV.items() if key != "id"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def brute_pass_at_k(outcomes, k):
    subsets = list(itertools.combinations(outcomes, k))
    return Fraction(sum(any(s) for s in subsets), len(subsets))


def brute_maj_at_k(votes, k):
    """Votes are (answer, correct) or None; ties split the credit evenly."""
    total, subsets = Fraction(0), list(itertools.combinations(votes, k))
    for subset in subsets:
        counts = Counter(v for v in subset if v is not None)
        if counts:
            top = max(counts.values())
            winners = [v for v, m in counts.items() if m == top]
            total += Fraction(sum(ok for _, ok in winners), len(winners))
    return total / len(subsets)


# -- the summary, without a model ------------------------------------------------------
def test_summarize_hand_made_samples():
    correct = [[True, False, False, False], [False, False, False, False], [True, True, False, True]]
    votes = [[("5", True), ("6", False), ("6", False), None],
             [("1", False), None, None, None],
             [("2", True), ("2", True), ("3", False), ("2", True)]]
    summary = summarize(correct, votes, ks=[1, 2, 4], rewards={"accuracy": [1.0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1],
                                                               "think_format": [0.5] * 12},
                        totals=[1.5] * 12, lengths=[10] * 6 + [20] * 6, truncated=[True] * 3 + [False] * 9)
    # pass@1 is the mean accuracy; pass@2 of task 0 = 1 - C(3,2)/C(4,2) = 1/2, of task 2 = 1.
    assert summary["pass@k"]["1"] == pytest.approx((1 / 4 + 0 + 3 / 4) / 3)
    assert summary["pass@k"]["2"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert summary["pass@k"]["4"] == pytest.approx(2 / 3)
    # maj@4: task 0 votes 6 (wrong), task 1 votes 1 (wrong), task 2 votes 2 (right).
    assert summary["maj@k"]["4"] == pytest.approx(1 / 3)
    for k in (1, 2, 4):
        expected = sum(brute_maj_at_k(v, k) for v in votes) / 3
        assert summary["maj@k"][str(k)] == pytest.approx(float(expected))
    assert summary["reward"] == pytest.approx({"total": 1.5, "accuracy": 4 / 12, "think_format": 0.5})
    assert summary["length_mean"] == 15 and summary["truncated_fraction"] == 0.25


def test_summarize_without_votes_reports_maj_as_not_applicable():
    summary = summarize([[True, False]], None, ks=[1, 2], rewards={"accuracy": [1.0, 0.0]}, totals=[1.0, 0.0],
                        lengths=[3, 5], truncated=[False, False])
    assert summary["maj@k"] is None and summary["pass@k"] == {"1": 0.5, "2": 1.0} and summary["format_rate"] is None
    rows = dict(summary_rows(summary))
    assert rows["maj@k"].startswith("n/a") and rows["pass@2"] == 1.0 and rows["length (tokens)"] == 4
    assert not any(name.startswith("format rate") for name in rows)


def test_format_rate_is_the_share_of_strict_answers():
    texts = ["\\boxed{5}", "<answer>6</answer>", "The answer is 7.", "no number"]
    answers, formatted = extracted_answers(texts, "flexible")
    assert answers == ["5", "6", "7", None] and formatted == [True, True, False, False]
    assert extracted_answers(texts, "strict") == (["5", "6", None, None], formatted)
    assert extracted_answers(texts, None) == ([None] * 4, None)
    summary = summarize([[True, False], [False, False]], None, ks=[1], rewards={"accuracy": [1.0, 0, 0, 0]},
                        totals=[1.0, 0, 0, 0], lengths=[1] * 4, truncated=[False] * 4, formatted=formatted)
    assert summary["format_rate"] == 0.5
    assert dict(summary_rows(summary))["format rate (boxed/<answer>)"] == 0.5


def test_vote_keys_group_equal_answers_and_split_on_the_verdict():
    answers = ["0.5", "\\frac{1}{2}", None, "x = 1/2", "0.5", "@@"]
    keys = vote_keys(answers, [True, True, True, True, False, False])
    assert keys[0] == keys[1] == keys[3] == ("1/2", True)
    assert keys[4] == ("1/2", False) and keys[2] is None and keys[5] is None


def test_maj_applies_to_math_answers_only():
    assert votes_apply(make("thinkgym/Math-v0").unwrapped)
    assert votes_apply(make("thinkgym/Math-v0", answer_extraction="flexible").unwrapped)
    assert not votes_apply(make("thinkgym/Math-v0", generator="countdown").unwrapped)
    assert not votes_apply(make("thinkgym/JSON-v0").unwrapped)


def test_env_extraction_is_the_math_envs_mode():
    assert env_extraction(make("thinkgym/Math-v0").unwrapped) == "strict"
    wrapped = make("thinkgym/Math-v0", answer_extraction="flexible", think_format=0.5)
    assert env_extraction(wrapped.unwrapped) == "flexible"
    assert env_extraction(make("thinkgym/Math-v0", generator="countdown").unwrapped) is None
    assert env_extraction(make("thinkgym/JSON-v0").unwrapped) is None
    own = TextEnv([{"id": "t", "question": "q", "answer": "1"}], [Reward("accuracy", math_reward)])
    assert env_extraction(own) == "strict"  # an env of one's own scored by math_reward


def test_task_selection_and_defaults():
    generator = make("thinkgym/Math-v0").unwrapped
    assert [t["id"] for t in select_tasks(generator, 3)] == ["arithmetic-0", "arithmetic-1", "arithmetic-2"]
    assert len(select_tasks(generator, None)) == 100
    dataset = make("thinkgym/JSON-v0").unwrapped
    assert len(select_tasks(dataset, None)) == len(dataset.tasks)
    assert parse_ks("16,1,4,4") == (1, 4, 16)
    with pytest.raises(EvalError, match="comma-separated integers"):
        parse_ks("1,four")
    assert default_out_dir("thinkgym/Math-v0").name.startswith("eval-Math-v0-")


# -- what counts as correct ----------------------------------------------------------------
def test_correct_means_full_marks_on_the_first_component():
    env = TextEnv([{"id": "t", "question": "q"}], [Reward("accuracy", lambda c: 0.0), Reward("format", lambda c: 0.0)])
    assert env.is_correct({"accuracy": 1.0, "format": 0.0})
    assert env.is_correct({"accuracy": 1.5, "format": 0.0})  # a bonus above full marks is still correct
    assert not env.is_correct({"accuracy": 0.999, "format": 1.0})  # the total does not matter
    samples = Samples([{"id": "t"}], 3, ["a", "b", "c"], [Scored(1.0, {"accuracy": 1.0, "format": 0.0}),
                                                          Scored(1.0, {"accuracy": 0.0, "format": 1.0}),
                                                          Scored(0.5, {"accuracy": 0.5, "format": 0.0})], None, None)
    assert samples.correct(env) == [True, False, False]


# -- batching and progress ------------------------------------------------------------------
def test_batches_bound_the_sequences_in_flight_and_keep_task_order():
    tasks = [{"id": i} for i in range(5)]
    pieces = [([t["id"] for t in chunk], k) for chunk, k in batches(tasks, 4, 8)]
    assert pieces == [([0, 1], 4), ([2, 3], 4), ([4], 4)]
    pieces = [([t["id"] for t in chunk], k) for chunk, k in batches(tasks[:2], 5, 2)]
    assert pieces == [([0], 2), ([0], 2), ([0], 1), ([1], 2), ([1], 2), ([1], 1)]  # n > batch: a task's samples split
    assert [k for _, k in batches(tasks, 1, 32)] == [1]


def test_sampling_runs_in_batches_with_a_progress_bar(capsys, micro_model):
    model, tokenizer = load_model(micro_model)
    engine, calls = HFEngine(model, tokenizer), []
    generate = engine.generate

    def spy(prompts, n, sampling, add_special_tokens=True):
        calls.append((len(prompts), n))
        return generate(prompts, n, sampling, add_special_tokens)

    engine.generate = spy
    env = make_env(EVAL_SEED)
    samples = sample_and_score(engine, env, select_tasks(env, 3), 2, Sampling(max_new_tokens=4), batch_size=5,
                               workers=1, desc="probe")
    assert calls == [(2, 2), (1, 2)] and len(samples.texts) == len(samples.scored) == samples.lengths.shape[0] == 6
    err = capsys.readouterr().err
    assert "probe: 100%" in err and "3/3" in err and "tok/s=" in err


def test_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["eval", "--model", "m", "--env", "e"])
    defaults = EvalOptions(model="m", env="e")
    assert (args.batch_size, args.threads, args.n) == (defaults.batch_size, defaults.threads, defaults.n)


# -- end to end ---------------------------------------------------------------------------
def test_eval_micro_model_end_to_end(capsys, tmp_path, micro_model):
    out = tmp_path / "eval"
    code, stdout, stderr = run(capsys, "eval", "--model", str(micro_model), "--env", TINY_ENV["id"], *tiny_env_args(),
                               "--limit", "4", "--n", "4", "--k", "1,2,4", "--max-new-tokens", "40", "--workers", "1",
                               "--batch-size", "6", "--out", str(out))
    assert code == 0, stdout
    assert "4/4" in stderr and "tok/s=" in stderr and "6 sequences at a time, torch threads: 1" in stderr
    assert "pass@4" in stdout and "maj@2" in stdout and "reward: accuracy" in stdout
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert summary["tasks"] == 4 and summary["n"] == 4 and summary["k"] == [1, 2, 4] and len(rows) == 16
    assert summary["model"] == str(micro_model) and summary["env"] == TINY_ENV["id"] and summary["wall_s"] > 0
    assert summary["options"]["env_args"]["difficulty"] == TINY_ENV["difficulty"]
    assert [(r["task_id"], r["sample"]) for r in rows] == [(f"arithmetic-{t}", s) for t in range(4) for s in range(4)]
    assert {"completion", "reward", "rewards", "reasons", "answer", "canonical"} <= rows[0].keys()

    by_task = [rows[i:i + 4] for i in range(0, 16, 4)]
    env = make(TINY_ENV["id"], **{k: v for k, v in TINY_ENV.items() if k != "id"}).unwrapped
    outcomes = [[env.is_correct(r["rewards"]) for r in task] for task in by_task]
    for k in (1, 2, 4):
        expected = sum(brute_pass_at_k(o, k) for o in outcomes) / 4
        assert summary["pass@k"][str(k)] == pytest.approx(float(expected))
    assert summary["pass@k"]["1"] <= summary["pass@k"]["2"] <= summary["pass@k"]["4"]
    votes = [[None if r["canonical"] is None else (r["canonical"], ok) for r, ok in zip(task, o)]
             for task, o in zip(by_task, outcomes)]
    assert any(v is not None for task in votes for v in task), "the micro model should give some answers"
    for k in (1, 2, 4):
        expected = sum(brute_maj_at_k(v, k) for v in votes) / 4
        assert summary["maj@k"][str(k)] == pytest.approx(float(expected))
    assert summary["reward"]["accuracy"] == pytest.approx(sum(map(sum, outcomes)) / 16)
    assert summary["length_mean"] == pytest.approx(sum(r["length"] for r in rows) / 16)
    assert summary["answer_extraction"] == "strict" and "format rate" in stdout
    assert summary["format_rate"] == pytest.approx(sum(r["answer"] is not None for r in rows) / 16)


def test_eval_with_a_flexible_env_votes_on_flexible_answers(capsys, tmp_path, micro_model):
    out = tmp_path / "eval"
    code, stdout, _ = run(capsys, "eval", "--model", str(micro_model), "--env", TINY_ENV["id"], *tiny_env_args(),
                          "--arg=answer_extraction=flexible", "--limit", "4", "--n", "4", "--k", "1,4",
                          "--max-new-tokens", "40", "--workers", "1", "--out", str(out))
    assert code == 0, stdout
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert summary["answer_extraction"] == summary["options"]["env_args"]["answer_extraction"] == "flexible"
    assert [r["answer"] for r in rows] == [extract_answer(r["completion"], "flexible") for r in rows]
    strict = [extract_answer(r["completion"]) for r in rows]
    assert any(a is None and r["answer"] is not None for a, r in zip(strict, rows)), "no answer came from the fallbacks"
    assert summary["format_rate"] == pytest.approx(sum(a is not None for a in strict) / 16)
    assert "format rate (boxed/<answer>)" in stdout
    by_task = [rows[i:i + 4] for i in range(0, 16, 4)]
    votes = [[None if r["canonical"] is None else (r["canonical"], r["rewards"]["accuracy"] >= 1) for r in task]
             for task in by_task]
    assert any(v is not None for task in votes for v in task)
    for k in (1, 4):
        assert summary["maj@k"][str(k)] == pytest.approx(float(sum(brute_maj_at_k(v, k) for v in votes) / 4))


def test_eval_is_reproducible_given_the_seed(capsys, tmp_path, micro_model):
    def completions(name):
        argv = ["eval", "--model", str(micro_model), "--env", TINY_ENV["id"], *tiny_env_args(), "--limit", "2", "--n", "2",
                "--k", "1", "--max-new-tokens", "24", "--workers", "1", "--seed", "7", "--out", str(tmp_path / name)]
        assert run(capsys, *argv)[0] == 0
        return [json.loads(line)["completion"] for line in (tmp_path / name / "samples.jsonl").open()]

    assert completions("a") == completions("b")


@pytest.mark.parametrize("argv,message", [
    (["--n", "4", "--k", "1,8"], "k=8 is out of range"),
    (["--k", "0"], "k=0 is out of range"),
    (["--k", "1,two"], "comma-separated integers"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--threads", "-1"], "--threads must be >= 0"),
])
def test_bad_options_are_one_line_exit_2(capsys, tmp_path, argv, message):
    model = tmp_path / "model"
    model.mkdir()
    code, _, err = run(capsys, "eval", "--model", str(model), "--env", "thinkgym/Math-v0", *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_model_or_env_is_one_line_exit_2(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [(["--model", str(tmp_path / "missing"), "--env", "thinkgym/Math-v0"], "model folder not found"),
             (["--model", str(tmp_path / "empty"), "--env", "thinkgym/Math-v0"], "no config.json"),
             (["--model", str(tmp_path / "empty"), "--env", "thinkgym/Nope-v0"], "unknown environment id")]
    for argv, message in cases:
        code, _, err = run(capsys, "eval", *argv, "--out", str(tmp_path / "out"))
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_engines_and_an_engine_that_cannot_run_the_model(capsys, tmp_path, micro_model):
    from transformers import GPT2Config, GPT2LMHeadModel

    from thinkgym.trainer.models.tiny_tokenizer import build_tokenizer

    common = ["--env", TINY_ENV["id"], *tiny_env_args(), "--limit", "2", "--n", "2", "--k", "1",
              "--max-new-tokens", "16", "--workers", "1"]
    for engine in ("hf", "static"):
        code, stdout, _ = run(capsys, "eval", "--model", str(micro_model), *common, "--engine", engine,
                              "--out", str(tmp_path / engine))
        assert code == 0, stdout
        assert json.loads((tmp_path / engine / "summary.json").read_text())["options"]["sampling"]["engine"] == engine
    tokenizer = build_tokenizer()
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2)).save_pretrained(gpt2)
    tokenizer.save_pretrained(gpt2)
    capsys.readouterr()
    code, _, err = run(capsys, "eval", "--model", str(gpt2), *common, "--engine", "static", "--out", str(tmp_path / "g"))
    assert code == 2 and err.splitlines()[-1] == ("thinkgym: error: --engine 'static' supports llama, mistral, qwen2, "
                                                  "qwen3 models, not 'gpt2'; use --engine=hf")
    code, stdout, _ = run(capsys, "eval", "--model", str(gpt2), *common, "--out", str(tmp_path / "auto"))
    assert code == 0, stdout  # auto picks hf for a family the static engine does not run


def test_engine_names_are_the_engines_and_auto():
    import typing

    from thinkgym.trainer.sampling import Sampling
    from thinkgym.trainer.engines import ENGINES

    assert ENGINE_NAMES == ("auto", *ENGINES)
    assert typing.get_args(typing.get_type_hints(Sampling)["engine"]) == ENGINE_NAMES
