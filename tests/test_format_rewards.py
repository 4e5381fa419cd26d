import pytest

from thinkgym.rewards.format import overlong_penalty, tag_count_reward, think_format_reward

GOOD = [
    "<think>2+2 is 4</think><answer>4</answer>",
    "  <think>\nreasoning\n</think>\n\n<answer> 4 </answer>\n",
]
BAD = {
    "": "missing_tag: <think>",
    "<answer>4</answer>": "missing_tag: <think>",
    "<think>a</think>": "missing_tag: <answer>",
    "<think>a</think><answer>4</answer> extra": "text_after_answer",
    "hi <think>a</think><answer>4</answer>": "text_before_think",
    "<think>a</think> so <answer>4</answer>": "text_between_think_and_answer",
    "<think> </think><answer>4</answer>": "empty_think",
    "<think>a</think><answer>\n</answer>": "empty_answer",
    "<think>a</think><think>b</think><answer>4</answer>": "repeated_tag: <think>",
    "<think>a<answer>4</answer></think>": "text_after_answer",
    "<answer>4</answer><think>a</think>": "text_before_think",
}


@pytest.mark.parametrize("completion", GOOD)
def test_think_format_accepts_exact_format(completion):
    assert think_format_reward(completion) == 1.0


@pytest.mark.parametrize("completion,reason", BAD.items())
def test_think_format_rejects_with_reason(completion, reason):
    score = think_format_reward(completion)
    assert score == 0.0
    assert score.reason == reason


def test_think_format_never_raises_on_junk():
    for junk in [None, b"\x00\xff", "\x00" * 10, "<think>" * 100_000, "x" * 1_000_000]:
        assert think_format_reward(junk) == 0.0


def test_tag_count_partial_credit():
    assert tag_count_reward("<think>a</think><answer>4</answer>") == 1.0
    assert tag_count_reward("<think>a</think> the answer is 4") == 0.5
    assert tag_count_reward("<think>a</think><think>b</think><answer>4</answer>") == 0.25  # only </answer> placed
    assert tag_count_reward("no tags") == 0.0
    score = tag_count_reward("<think>a</think><answer>4</answer> trailing")
    assert score == 0.75 and "</answer>" in score.reason


@pytest.mark.parametrize("tokens,expected", [(0, 0.0), (80, 0.0), (90, -0.5), (99, -0.95), (100, -1.0), (150, -1.0)])
def test_overlong_penalty_dapo_ramp(tokens, expected):
    assert overlong_penalty(tokens, max_tokens=100, buffer=20) == pytest.approx(expected)


def test_overlong_penalty_rejects_bad_buffer():
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(10, max_tokens=100, buffer=0)
