"""Unbiased pass@k and maj@k from n samples per problem, computed exactly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from math import comb


def _check_k(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. 2021 (Codex, arXiv:2107.03374) from ``n`` samples, ``c`` correct.

    ``pass@k = 1 - C(n - c, k) / C(n, k)``, the probability that a uniformly random
    ``k``-subset of the samples holds a correct one, in the numerically stable
    product form ``1 - prod_{i = n-c+1}^{n} (1 - k / i)``; 1.0 when ``n - c < k``.
    """
    _check_k(n, k)
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def _correctness(answers: Sequence[Hashable | None], correct) -> dict[Hashable, bool]:
    if isinstance(correct, Mapping):
        missing = {a for a in answers if a is not None and a not in correct}
        if missing:
            raise ValueError(f"correct has no entry for answer(s) {sorted(map(repr, missing))}")
        return {a: bool(correct[a]) for a in answers if a is not None}
    if len(correct) != len(answers):
        raise ValueError(f"correct has {len(correct)} entries for {len(answers)} answers")
    table: dict[Hashable, bool] = {}
    for a, ok in zip(answers, correct):
        if a is not None and table.setdefault(a, bool(ok)) != bool(ok):
            raise ValueError(f"answer {a!r} is marked both correct and incorrect")
    return table


def _plurality_weight(j: int, others: list[int], n_none: int, rest: int) -> Fraction:
    """Sum, over the ways of drawing ``rest`` more samples from the other answer groups
    (sizes ``others``) and the unanswered ones (``n_none``) so that no group gets more
    than ``j`` votes, of ``1 / (1 + number of groups with exactly j votes)``."""
    # ways[s][t]: draws of s samples so far, t of the groups seen tied at exactly j votes.
    max_ties = rest // j
    ways = [[comb(n_none, s)] + [0] * max_ties for s in range(rest + 1)]
    for m in others:
        new = [[0] * (max_ties + 1) for _ in range(rest + 1)]
        for s, row in enumerate(ways):
            for t, w in enumerate(row):
                if w:
                    for i in range(min(m, j, rest - s) + 1):
                        new[s + i][t + (i == j)] += w * comb(m, i)
        ways = new
    return sum((Fraction(w, t + 1) for t, w in enumerate(ways[rest]) if w), Fraction(0))


def maj_at_k(answers: Sequence[Hashable | None], correct: Mapping[Hashable, bool] | Sequence[bool], k: int) -> float:
    """Unbiased maj@k (majority voting, Wang et al. 2023 self-consistency) from ``n`` samples.

    Definition: draw a uniformly random ``k``-subset ``S`` of the ``n`` samples; the
    candidates are the extracted answers with the most votes in ``S`` (``None``,
    "no answer", never votes or wins; if ``S`` holds only ``None`` the score is 0);
    the vote picks one candidate uniformly at random, so ``S`` scores the fraction
    of its candidates that are correct. ``maj@k = E_S[score]``, which uses all ``n``
    samples rather than the first ``k`` (for ``k = n`` it is the plain majority vote).

    Computed exactly, without enumerating subsets: for each correct answer ``v``
    with ``m_v`` samples and each vote count ``j``, count the subsets where ``v``
    has ``j`` votes and every other answer at most ``j``, weighting each by
    ``1 / (number tied at j)``, with a dynamic programme over the other answer
    groups; then divide by ``C(n, k)``.

    Args:
        answers: the ``n`` canonical extracted answers (hashable), ``None`` where none was found.
        correct: a mapping answer -> bool covering every answer, or ``n`` bools aligned
            with ``answers`` (equal answers must agree; entries for ``None`` are ignored).
        k: votes per majority, ``1 <= k <= n``.
    """
    n = len(answers)
    _check_k(n, k)
    is_correct = _correctness(answers, correct)
    votes = Counter(a for a in answers if a is not None)
    n_none = n - sum(votes.values())
    total = Fraction(0)
    for v, m_v in votes.items():
        if not is_correct[v]:
            continue
        others = [m for u, m in votes.items() if u != v]
        for j in range(1, min(m_v, k) + 1):
            total += comb(m_v, j) * _plurality_weight(j, others, n_none, k - j)
    return float(total / comb(n, k))
