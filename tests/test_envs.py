import json
import logging

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import thinkgym
from thinkgym.envs import EnvError, Reward, TextEnv, ThinkFormat, make_generator
from thinkgym.rewards import Score


def exact_match(completion: str, answer: str) -> float:
    """A user's reward: 1.0 iff the completion is exactly the answer."""
    if completion.strip() == answer:
        return Score(1.0, "correct")
    return Score(0.0, "wrong_answer")


TASKS = [{"id": "t1", "question": "Say A", "answer": "A"}, {"id": "t2", "question": "Say B", "answer": "B"},
         {"id": "t3", "question": "Say C", "answer": "C"}]


def test_env_from_tasks_and_a_reward_in_a_few_lines():
    env = TextEnv(TASKS, [Reward("accuracy", exact_match)], prompt="{question}")
    obs, info = env.reset(options={"task_id": "t2"})
    assert obs == [{"role": "user", "content": "Say B"}] and info["task_id"] == "t2"
    obs, reward, terminated, truncated, info = env.step("B")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["rewards"] == {"accuracy": 1.0} and info["reason"] == "correct" and info["answer"] == "B"
    env.reset(options={"task_id": "t2"})
    _, reward, _, _, info = env.step("nope")
    assert reward == 0.0 and info["reason"] == "wrong_answer"


def test_reset_is_deterministic_per_seed():
    env = TextEnv(make_generator("arithmetic", size=1000), [Reward("accuracy", exact_match)])
    first = [env.reset(seed=s)[1]["task_id"] for s in range(5)]
    assert first == [env.reset(seed=s)[1]["task_id"] for s in range(5)]
    assert len(set(first)) > 1


def test_multi_turn_feedback_until_solved():
    env = TextEnv(TASKS, [Reward("accuracy", exact_match)], max_turns=3, feedback="Wrong ({reason}), say {answer}")
    env.reset(options={"task_id": "t1"})
    obs, reward, terminated, truncated, info = env.step("B")
    assert not terminated and not truncated and info["turn"] == 1
    assert obs[-2] == {"role": "assistant", "content": "B"}
    assert obs[-1] == {"role": "user", "content": "Wrong (wrong_answer), say A"}
    _, reward, terminated, truncated, _ = env.step("A")
    assert reward == 1.0 and terminated and not truncated
    env.reset(options={"task_id": "t1"})
    results = [env.step("x")[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]  # out of turns: truncated


def test_styles_and_think_format_wrapper():
    env = TextEnv(TASKS, [Reward("accuracy", exact_match)], style="r1_zero")
    obs, _ = env.reset(options={"task_id": "t1"})
    assert isinstance(obs, str) and obs.endswith("User: Say A. Assistant: <think>")
    wrapped = ThinkFormat(env, weight=0.5)
    wrapped.reset(options={"task_id": "t1"})
    _, reward, _, _, info = wrapped.step(" A is asked for </think> <answer>A</answer>")
    assert info["rewards"] == {"accuracy": 0.0, "think_format": 1.0} and reward == 0.5
    chat = ThinkFormat(TextEnv(TASKS, [Reward("accuracy", exact_match)]), weight=1.0)
    obs, _ = chat.reset(seed=0)
    assert obs[0]["role"] == "system" and "<think>" in obs[0]["content"]


def test_prefill_opens_the_response_and_is_scored_with_it():
    """A chat model prefilled with <think> (R1-Zero's opening): the rendered prompt
    ends with it after the generation prompt, and the completion continues it."""
    from thinkgym.trainer.evaluation.samples import render_prompts
    from thinkgym.trainer.models.tiny_tokenizer import build_tokenizer

    env = ThinkFormat(TextEnv(TASKS, [Reward("accuracy", exact_match)], prefill="<think>"), weight=1.0, tag_count=0.5)
    base = env.unwrapped
    tokenizer = build_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    (prompt,), chat = render_prompts(base, tokenizer, TASKS[:1])
    assert chat and prompt.endswith("[user] Say A\n[assistant] <think>")
    env.reset(options={"task_id": "t1"})
    obs, reward, _, _, info = env.step(" A is asked for </think> <answer>A</answer>")
    assert info["rewards"] == {"accuracy": 0.0, "think_format": 1.0, "tag_count": 1.0} and reward == 1.5
    assert obs[-1] == {"role": "assistant", "content": "<think> A is asked for </think> <answer>A</answer>"}
    # Partial credit: <think> (the prefill) and </think> placed, no answer yet.
    assert base.score(" A is asked for </think> and so on", TASKS[0]).rewards == \
        {"accuracy": 0.0, "think_format": 0.0, "tag_count": 0.5}
    text = TextEnv(TASKS, [Reward("accuracy", exact_match)], style="text", prefill="Answer:")
    assert render_prompts(text, tokenizer, TASKS[1:2]) == (["Say BAnswer:"], False)
    assert text.score(" B", TASKS[1]).rewards == {"accuracy": 0.0}  # scored as "Answer: B"
    with pytest.raises(EnvError, match="r1_zero's template already ends the prompt with <think>"):
        TextEnv(TASKS, [Reward("accuracy", exact_match)], style="r1_zero", prefill="<think>")
    for bad in (1, None):
        with pytest.raises(EnvError, match="prefill must be a string"):
            TextEnv(TASKS, [Reward("accuracy", exact_match)], prefill=bad)


def test_bad_construction_and_use():
    with pytest.raises(EnvError, match="empty"):
        TextEnv([], [Reward("accuracy", exact_match)])
    with pytest.raises(KeyError, match="answer"):
        TextEnv([{"id": "x", "question": "q"}], [Reward("accuracy", exact_match)])
    with pytest.raises(EnvError, match="style"):
        TextEnv(TASKS, [Reward("accuracy", exact_match)], style="markdown")
    env = TextEnv(TASKS, [Reward("accuracy", exact_match)])
    with pytest.raises(EnvError, match="reset"):
        env.step("A")
    with pytest.raises(EnvError, match="no task with id"):
        env.reset(options={"task_id": "missing"})
    env.reset(seed=0)
    with pytest.raises(EnvError, match="completion string"):
        env.step(42)


@pytest.mark.parametrize("env_id,kwargs", [
    ("thinkgym/Math-v0", {}),
    ("thinkgym/Math-v0", {"generator": "countdown", "style": "r1_zero"}),
    ("thinkgym/JSON-v0", {}),
    ("thinkgym/Code-v0", {}),
])
def test_builtin_envs_pass_gymnasium_env_checker(env_id, kwargs):
    env = thinkgym.make(env_id, **kwargs)
    check_env(env, skip_render_check=True)
    assert env.render() is None


def test_gymnasium_make_works_for_thinkgym_ids():
    env = gymnasium.make("thinkgym/Math-v0", generator="linear_equation")
    obs, info = env.reset(seed=3)
    assert info["task_id"].startswith("linear_equation-")


def test_registration_and_unknown_ids():
    thinkgym.register("tests/Echo-v0", TextEnv, tasks=TASKS, rewards=[Reward("accuracy", exact_match)])
    assert thinkgym.list_envs()["tests/Echo-v0"] == "user"
    env = gymnasium.make("tests/Echo-v0")
    env.reset(seed=1)
    with pytest.raises(EnvError, match="did you mean 'thinkgym/Math-v0'"):
        thinkgym.make("thinkgym/Mat-v0")


def install_plugin(tmp_path, monkeypatch, name, entry_point):
    """A distribution on sys.path with one ``thinkgym.envs`` entry point, as pip would leave it."""
    from thinkgym.envs import registry

    dist = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[thinkgym.envs]\n{entry_point}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):

    (tmp_path / "tg_plugin_envs.py").write_text(
        "import thinkgym\n"
        "def register_all():\n"
        "    thinkgym.register('plugin/Hello-v0', 'thinkgym.envs.math_env:make_math_env', generator='arithmetic')\n")
    install_plugin(tmp_path, monkeypatch, "tg-plugin", "hello = tg_plugin_envs:register_all")
    assert thinkgym.list_envs()["plugin/Hello-v0"] == "hello"
    env = thinkgym.make("plugin/Hello-v0")
    assert env.reset(seed=0)[1]["task_id"].startswith("arithmetic-")


def test_broken_plugin_is_reported_by_name(tmp_path, monkeypatch, caplog):
    install_plugin(tmp_path, monkeypatch, "tg-broken", "broken = no_such_module_xyz:register")
    with caplog.at_level(logging.ERROR):
        envs = thinkgym.list_envs()
    assert "thinkgym/Math-v0" in envs
    assert "'broken'" in caplog.text and "no_such_module_xyz" in caplog.text


def test_readme_custom_env_example(tmp_path):
    from thinkgym.envs import read_rows

    (tmp_path / "my_tasks.jsonl").write_text(json.dumps({"id": "q1", "question": "Capital of France?", "answer": "Paris"}) + "\n")
    _, rows = read_rows(tmp_path / "my_tasks.jsonl")
    thinkgym.register("tests/Exact-v0", TextEnv, tasks=rows, rewards=[Reward("accuracy", exact_match)],
                      prompt="{question}\nAnswer with one word.")
    env = thinkgym.make("tests/Exact-v0")
    obs, _ = env.reset(seed=0)
    assert obs[0]["content"] == "Capital of France?\nAnswer with one word."
    assert env.step("Paris")[1] == 1.0


def test_non_string_prompt_template_is_refused():
    with pytest.raises(EnvError, match="prompt must be a string template"):
        TextEnv(TASKS, [Reward("accuracy", exact_match)], prompt={"question": None})
