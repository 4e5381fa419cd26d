"""thinkgym/Math-v0: dataset presets on small local files in each layout, and the generators."""

import itertools
import json
import logging
import pickle
from fractions import Fraction

import pytest

import thinkgym
from thinkgym.envs import EnvError, make_generator


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def boxed(answer):
    return f"So the answer is \\boxed{{{answer}}}."


def test_gsm8k_layout(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Tom has 3 apples and buys 1,230 more. How many?", "answer": "3 + 1230 = 1233\n#### 1,233"},
        {"question": "What is 6 times 7?", "answer": "6*7=42\n#### 42"}])
    env = thinkgym.make("thinkgym/Math-v0", source=path, preset="gsm8k")
    assert [t["answer"] for t in env.tasks] == ["1233", "42"]
    assert env.score(boxed("1233"), env.tasks[0]).reward == 1.0
    assert env.score(boxed("1234"), env.tasks[0]).reward == 0.0


def test_math_layout_takes_last_boxed_of_solution(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Simplify $\\frac{2}{4}$.", "solution": "We get $\\boxed{\\frac{1}{2}}$.", "level": "Level 1"},
        {"problem": "Solve $x^2=4$, $x>0$.", "solution": "$x=\\boxed{2}$ (not \\boxed{-2}?) no: \\boxed{2}"}])
    env = thinkgym.make("thinkgym/Math-v0", source=path, preset="math")
    assert [t["answer"] for t in env.tasks] == ["\\frac{1}{2}", "2"]
    assert env.score(boxed("0.5"), env.tasks[0]).reward == 1.0


def test_math500_layout_uses_answer_column_and_unique_id(tmp_path):
    path = write_jsonl(tmp_path / "math500.jsonl", [
        {"problem": "What is 1+1?", "solution": "\\boxed{2}", "answer": "2", "unique_id": "test/algebra/1.json"}])
    env = thinkgym.make("thinkgym/Math-v0", source=path, preset="math")
    assert env.tasks[0]["id"] == "test/algebra/1.json"
    obs, _ = env.reset(options={"task_id": "test/algebra/1.json"})
    assert "What is 1+1?" in obs[-1]["content"]


def test_dapo_layout_from_parquet(tmp_path):
    import datasets

    from thinkgym.envs.math_env import DAPO_HEAD, DAPO_TAIL
    rows = [{"data_source": "math_dapo", "prompt": [{"role": "user", "content": DAPO_HEAD + "Find 2+3." + DAPO_TAIL}],
             "ability": "MATH", "reward_model": {"ground_truth": "5", "style": "rule-math"},
             "extra_info": {"index": "a1b2"}}]
    path = tmp_path / "dapo.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    env = thinkgym.make("thinkgym/Math-v0", source=str(path), preset="dapo")
    assert env.tasks[0] == {"question": "Find 2+3.", "answer": "5", "id": "a1b2"}


def test_csv_with_column_mapping(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("problem,solution_value\nWhat is 2+2?,4\n")
    env = thinkgym.make("thinkgym/Math-v0", source=str(path), columns={"question": "problem", "answer": "solution_value"})
    assert env.tasks[0]["question"] == "What is 2+2?" and env.tasks[0]["answer"] == "4"


def test_bad_rows_and_files_are_named(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "1"}, {"question": "q2"}])
    with pytest.raises(EnvError, match=r"row 1 has no column 'answer'"):
        thinkgym.make("thinkgym/Math-v0", source=path)
    with pytest.raises(EnvError, match="not found"):
        thinkgym.make("thinkgym/Math-v0", source=str(tmp_path / "missing.jsonl"))
    (tmp_path / "broken.jsonl").write_text('{"question": "q", "answer": "1"}\n{oops\n')
    with pytest.raises(EnvError, match=r"broken.jsonl:2: not valid JSON"):
        thinkgym.make("thinkgym/Math-v0", source=str(tmp_path / "broken.jsonl"))
    with pytest.raises(EnvError, match="unknown math preset"):
        thinkgym.make("thinkgym/Math-v0", source=path, preset="gsm9k")
    gsm = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(EnvError, match="row 0: GSM8K answer has no"):
        thinkgym.make("thinkgym/Math-v0", source=gsm, preset="gsm8k")


def test_unparsable_gold_answers_are_reported(tmp_path, caplog):
    path = write_jsonl(tmp_path / "gold.jsonl", [{"question": "q1", "answer": "7"},
                                                 {"question": "q2", "answer": "\\frac{"}])
    with caplog.at_level(logging.WARNING):
        env = thinkgym.make("thinkgym/Math-v0", source=path)
    assert [i for i, _ in env.gold_failures] == ["math-1"]
    assert "1 of 2 gold answers cannot be parsed" in caplog.text
    assert env.score(boxed("\\frac{"), env.tasks[1]).reward == 0.0


@pytest.mark.parametrize("name", ["arithmetic", "linear_equation", "fraction_arithmetic"])
def test_generators_are_seeded_and_their_gold_scores(name):
    env = thinkgym.make("thinkgym/Math-v0", generator=name, seed=7, size=50)
    again = make_generator(name, size=50, seed=7)
    assert [t["question"] for t in env.tasks] == [t["question"] for t in again]
    assert [t["question"] for t in env.tasks] != [t["question"] for t in make_generator(name, size=50, seed=8)]
    tasks = list(env.tasks)[:20]
    scores = env.score_many([boxed(t["answer"]) for t in tasks], tasks)
    assert all(s.reward == 1.0 for s in scores), [(t, s) for t, s in zip(tasks, scores) if s.reward != 1.0]


def test_linear_equation_answers_solve_the_equation():
    for task in make_generator("linear_equation", size=30, seed=1):
        left, right = task["question"].removeprefix("Solve for x: ").rstrip(".").split(" = ")
        x = int(task["answer"])
        value = lambda side: eval(side.replace("x", f"*({x})"))  # noqa: E731,S307 - our generated text
        assert value(left) == value(right)


def test_difficulty_knobs_and_bad_knobs():
    task = make_generator("arithmetic", size=5, digits=5, terms=3)[0]
    assert len(task["question"].split()) == 6 and all(len(w) == 5 for w in task["question"][8:-1].split()[::2])
    with pytest.raises(EnvError, match="digits"):
        make_generator("arithmetic", digits=0)
    with pytest.raises(EnvError, match="unexpected keyword"):
        make_generator("countdown", digits=3)
    with pytest.raises(EnvError, match="unknown generator"):
        make_generator("calculus")


def test_flexible_answer_extraction_for_datasets_and_generators(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "What is 6 times 7?", "answer": "6*7=42\n#### 42"}])
    dataset = thinkgym.make("thinkgym/Math-v0", source=path, preset="gsm8k", answer_extraction="flexible")
    generator = thinkgym.make("thinkgym/Math-v0", generator="arithmetic", size=5, answer_extraction="flexible")
    for env in (dataset, generator):
        task = env.tasks[0]
        assert env.answer_extraction == "flexible"
        assert env.score(f"The answer is {task['answer']}.", task).reward == 1.0
        assert env.score(f"The answer is {int(task['answer']) + 1}.", task).reward == 0.0
        assert env.score(boxed(task["answer"]), task).reward == 1.0


def test_strict_is_the_default_and_scores_with_math_reward_itself():
    from thinkgym.rewards import math_reward

    env = thinkgym.make("thinkgym/Math-v0", size=5)
    task = env.tasks[0]
    assert env.answer_extraction == "strict" and env.rewards[0].fn is math_reward
    scored = env.score(f"The answer is {task['answer']}.", task)
    assert (scored.reward, scored.reasons["accuracy"]) == (0.0, "no_answer_found")


def test_flexible_reward_pickles_for_worker_processes():
    env = thinkgym.make("thinkgym/Math-v0", size=4, answer_extraction="flexible")
    fn = pickle.loads(pickle.dumps(env.rewards[0].fn))
    assert fn("So the answer is 1,234.", answer="1234").reason == "correct"
    tasks = list(env.tasks)
    scores = env.score_many([f"Answer: {t['answer']}" for t in tasks], tasks, workers=2)
    assert [s.reward for s in scores] == [1.0] * 4


def test_bad_answer_extraction_and_countdown():
    with pytest.raises(EnvError, match=r"unknown answer_extraction 'loose'; choose one of \['strict', 'flexible'\]"):
        thinkgym.make("thinkgym/Math-v0", answer_extraction="loose")
    with pytest.raises(EnvError, match="does not apply to the countdown generator"):
        thinkgym.make("thinkgym/Math-v0", generator="countdown", answer_extraction="flexible")
    assert thinkgym.make("thinkgym/Math-v0", generator="countdown", size=3).answer_extraction is None


def solvable(numbers, target):
    """Brute force: can ``numbers`` (each once) reach ``target`` with + - * /?"""
    values = [Fraction(n) for n in numbers]
    if len(values) == 1:
        return values[0] == target
    for i, j in itertools.permutations(range(len(values)), 2):
        rest = [v for k, v in enumerate(values) if k not in (i, j)]
        a, b = values[i], values[j]
        options = [a + b, a - b, a * b] + ([a / b] if b else [])
        if any(solvable(rest + [v], target) for v in options):
            return True
    return False


def test_countdown_tasks_are_solvable_and_scored_by_countdown_reward():
    env = thinkgym.make("thinkgym/Math-v0", generator="countdown", size=10, difficulty={"count": 3})
    for task in list(env.tasks)[:5]:
        assert solvable(task["numbers"], task["target"])
    task = {"id": "c", "question": "", "target": 24, "numbers": [4, 6, 1]}
    assert env.score("<answer>4 * 6 * 1</answer>", task).reward == 1.0
    assert env.score("<answer>4 * 6</answer>", task).reward == 0.0
