"""as_trl against TRL's documented reward-function calling convention:
``reward_func(prompts=..., completions=..., completion_ids=..., **dataset_columns, trainer_state=...)``,
completions as strings (standard datasets) or as ``[{"role": "assistant", "content": ...}]``."""

import pytest

from thinkgym.rewards.format import think_format_reward
from thinkgym.rewards.structured import json_reward
from thinkgym.rewards.trl import as_trl


def test_standard_format_with_extra_trl_kwargs():
    reward = as_trl(think_format_reward)
    completions = ["<think>a</think><answer>1</answer>", "nope", "<think>b</think><answer>2</answer>"]
    out = reward(prompts=["p"] * 3, completions=completions, completion_ids=[[1], [2], [3]],
                 answer=["1", "2", "3"], trainer_state=object(), log_extra=None, log_metric=None)
    assert out == [1.0, 0.0, 1.0]
    assert all(type(x) is float for x in out)
    assert reward.__name__ == "think_format_reward"


def test_conversational_format_and_columns_row_by_row():
    reward = as_trl(json_reward, workers=2)
    schema = {"type": "object", "required": ["a"]}
    completions = [[{"role": "assistant", "content": '{"a": 1}'}], [{"role": "assistant", "content": '{"b": 1}'}],
                   [{"role": "assistant", "content": '{"a": 2}'}]]
    out = reward(prompts=[[{"role": "user", "content": "q"}]] * 3, completions=completions,
                 schema=[schema] * 3, expected=[{"a": 1}, None, {"a": 3}])
    assert out == [1.0, 0.0, 0.0]


def test_missing_column_is_named():
    reward = as_trl(json_reward)
    with pytest.raises(TypeError, match="completions"):
        reward(prompts=["p"])
    from thinkgym.rewards.parallel import score_batch
    with pytest.raises(KeyError, match="needs column"):
        score_batch(lambda completion, answer: 1.0, ["x"], {})
