"""pass@k and maj@k against brute-force enumeration of every k-subset."""

import itertools
import random
from collections import Counter
from fractions import Fraction
from math import comb

import pytest

from thinkgym.trainer.evaluation.passk import maj_at_k, pass_at_k


def brute_pass_at_k(n, c, k):
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def brute_maj_at_k(answers, is_correct, k):
    total = Fraction(0)
    subsets = list(itertools.combinations(answers, k))
    for subset in subsets:
        votes = Counter(a for a in subset if a is not None)
        if not votes:
            continue
        top = max(votes.values())
        winners = [a for a, m in votes.items() if m == top]
        total += Fraction(sum(is_correct[a] for a in winners), len(winners))
    return float(total / len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 3 of the 6 pairs hold the correct one
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct one
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)


def test_pass_at_k_large_n_is_stable():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 10, 100) == pytest.approx(1 - comb(990, 100) / comb(1000, 100), rel=1e-9)


@pytest.mark.parametrize("args", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_validates(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_maj_at_k_hand_values():
    # n=4: answers 1, 1, 2, 2 with 1 correct. k=4: a 2-2 tie, half credit.
    answers = [1, 1, 2, 2]
    assert maj_at_k(answers, {1: True, 2: False}, 4) == pytest.approx(0.5)
    # k=1: half the samples say 1.
    assert maj_at_k(answers, {1: True, 2: False}, 1) == pytest.approx(0.5)
    # k=3: every 3-subset has a 2-1 majority; 1 wins in C(2,2)*C(2,1) = 2 of the 4 subsets.
    assert maj_at_k(answers, {1: True, 2: False}, 3) == pytest.approx(0.5)
    # 3, 3, 3, 7, None with 3 correct, k=2 over 10 pairs:
    # {3,3} x3 -> 1; {3,7} x3 -> 1/2; {3,None} x3 -> 1; {7,None} -> 0  => 7.5 / 10.
    assert maj_at_k([3, 3, 3, 7, None], [True, True, True, False, False], 2) == pytest.approx(0.75)


def test_maj_at_k_full_sample_is_the_plain_vote():
    assert maj_at_k(["a", "a", "b"], {"a": True, "b": False}, 3) == 1.0
    assert maj_at_k(["a", "b", "b"], {"a": True, "b": False}, 3) == 0.0
    assert maj_at_k([None, None, "a"], {"a": True}, 3) == 1.0  # no answer never wins
    assert maj_at_k([None, None], {}, 1) == 0.0


def test_maj_at_k_matches_enumeration_random():
    rng = random.Random(0)
    for _ in range(60):
        n = rng.randint(1, 8)
        pool = ["a", "b", "c", "d", None][: rng.randint(1, 5)]
        answers = [rng.choice(pool) for _ in range(n)]
        is_correct = {a: rng.random() < 0.5 for a in pool if a is not None}
        for k in range(1, n + 1):
            assert maj_at_k(answers, is_correct, k) == pytest.approx(brute_maj_at_k(answers, is_correct, k), abs=1e-12)


def test_maj_at_k_two_correct_answers_and_list_form():
    answers = ["x", "y", "y", "z", "x", None, "z", "z"]
    flags = [a in ("x", "y") for a in answers]
    table = {"x": True, "y": True, "z": False}
    for k in range(1, 9):
        expected = brute_maj_at_k(answers, table, k)
        assert maj_at_k(answers, flags, k) == pytest.approx(expected, abs=1e-12)


def test_maj_at_k_is_fast_and_exact_at_n_64():
    answers = [i % 5 if i % 7 else None for i in range(64)]
    value = maj_at_k(answers, {a: a == 2 for a in range(5)}, 32)
    assert 0.0 <= value <= 1.0
    assert maj_at_k(list(range(64)), {a: a == 0 for a in range(64)}, 64) == pytest.approx(1 / 64)


def test_maj_at_k_validates():
    with pytest.raises(ValueError, match="k"):
        maj_at_k(["a"], {"a": True}, 2)
    with pytest.raises(ValueError, match="no entry"):
        maj_at_k(["a", "b"], {"a": True}, 1)
    with pytest.raises(ValueError, match="both correct and incorrect"):
        maj_at_k(["a", "a"], [True, False], 1)
    with pytest.raises(ValueError, match="entries"):
        maj_at_k(["a", "a"], [True], 1)
