"""Tests for the Countdown reward: extraction, exact evaluation, number use, safety."""

from __future__ import annotations

import time

import pytest

from thinkgym.rewards.countdown import MAX_EXPRESSION_CHARS, countdown_reward, extract_expression
from thinkgym.rewards.score import Score


def answer(expression: str) -> str:
    return f"<think>Let me try combinations.</think>\n<answer>{expression}</answer>"


@pytest.mark.parametrize(
    "expression, target, numbers",
    [
        ("(1 + 2) * 3", 9, [1, 2, 3]),
        ("3 * (2 + 1)", 9, [3, 2, 1]),
        ("55 + 36 - 7 - 19", 65, [19, 36, 55, 7]),
        ("(44 - 20) * 3 / 2", 36, [44, 20, 3, 2]),
        ("100 / (5 - 1) + 1", 26, [100, 5, 1, 1]),  # a repeated given number, used twice
        ("8 / (3 - 8 / 3)", 24, [8, 3, 8, 3]),  # exact fractions: 8 / (1/3)
        ("-(2 - 7) * 4", 20, [2, 7, 4]),
        ("(1+2)*3 = 9", 9, [1, 2, 3]),  # the trailing "= 9" is dropped
        ("(1 + 2) \\times 3", 9, [1, 2, 3]),
        ("12 \\div 4 + 6", 9, [12, 4, 6]),
    ],
)
def test_correct_expressions(expression, target, numbers):
    score = countdown_reward(answer(expression), target, numbers)
    assert isinstance(score, Score)
    assert (score, score.reason) == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, target, numbers, reason",
    [
        (answer("(1 + 2) * 4"), 9, [1, 2, 3], "wrong_numbers"),  # a number not given
        (answer("3 * 3"), 9, [1, 2, 3], "wrong_numbers"),  # a number reused
        (answer("(1 + 2) * 3"), 9, [1, 2, 3, 4], "wrong_numbers"),  # a number left out
        (answer("100 / (5 - 1) + 1"), 26, [100, 5, 1], "wrong_numbers"),  # 1 given once, used twice
        (answer("1 + 2 + 3"), 9, [1, 2, 3], "wrong_value"),
        (answer("7 / 2"), 3, [7, 2], "wrong_value"),  # no integer division
        (answer("(1+2)*3 = 10"), 10, [1, 2, 3], "wrong_value"),  # the claimed right side is not scored
        (answer("4 / (2 - 2)"), 2, [4, 2, 2], "division_by_zero"),
        ("The answer is (1+2)*3", 9, [1, 2, 3], "no_answer_found"),
        (answer(""), 9, [1, 2, 3], "invalid_expression"),
        (answer("(1 + 2 * 3"), 9, [1, 2, 3], "invalid_expression"),
        (answer("2 ** 3 + 1"), 9, [2, 3, 1], "invalid_expression"),
        (answer("2**100000"), 9, [2, 100000], "invalid_expression"),
        (answer("7 // 2 + 6"), 9, [7, 2, 6], "invalid_expression"),
        (answer("+9"), 9, [9], "invalid_expression"),
        (answer("1.5 * 6"), 9, [6], "invalid_expression"),
        (answer("0x9"), 9, [9], "invalid_expression"),
        (answer("09"), 9, [9], "invalid_expression"),
        (answer("__import__('os').system('echo pwned')"), 9, [9], "invalid_expression"),
        (answer("(lambda: 9)()"), 9, [9], "invalid_expression"),
        (answer("x + 1"), 9, [1], "invalid_expression"),
        (answer("(" * 150 + "9" + ")" * 150), 9, [9], "expression_too_long"),
        (answer("(" * 99 + "9" + ")" * 99), 9, [9], "correct"),
        (answer("-" * 199 + "9"), -9, [9], "correct"),
        (answer("1" * (MAX_EXPRESSION_CHARS + 1)), 9, [9], "expression_too_long"),
    ],
)
def test_scores_and_reasons(completion, target, numbers, reason):
    score = countdown_reward(completion, target, numbers)
    assert score.reason == reason
    assert score == (1.0 if reason == "correct" else 0.0)


def test_boxed_expression_is_a_fallback():
    assert countdown_reward("so $\\boxed{(1 + 2) * 3}$", 9, [1, 2, 3]) == 1.0
    assert extract_expression("\\boxed{1+1} <answer>2*1</answer>") == "2*1"  # the answer tag wins


def test_last_answer_tag_wins():
    completion = answer("1 + 2 + 3") + " wait " + answer("(1 + 2) * 3")
    assert countdown_reward(completion, 9, [1, 2, 3]) == 1.0


def test_never_raises_and_is_fast_on_junk():
    junk = [
        bytes(range(256)).decode("latin-1"),
        answer(bytes(range(256)).decode("latin-1")),
        "x" * 1_000_000 + answer("(1+2)*3"),
        "<answer>" * 100_000,
        answer("9" * 200),
        answer("9" + " * 9" * 49),
    ]
    start = time.monotonic()
    for completion in junk:
        assert isinstance(countdown_reward(completion, 9, [1, 2, 3]), Score)
    assert time.monotonic() - start < 2.0
