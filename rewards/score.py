"""The value every thinkgym reward returns: a float that also says why."""

from __future__ import annotations


class Score(float):
    """A reward value with the reason it has that value.

    It *is* a float (arithmetic, comparisons, ``json.dumps`` and TRL all see a
    plain number), so rewards keep the pure ``(completion, **fields) -> float``
    contract, while environments can still report why a completion scored zero::

        >>> s = Score(0.0, "no_answer_found")
        >>> s == 0.0, s.reason
        (True, 'no_answer_found')

    Reasons are short machine-readable strings: ``"correct"``, ``"wrong_answer"``,
    ``"no_answer_found"``, ``"timeout"``, ``"invalid_json"``,
    ``"test_failed: AssertionError at line 3"``...
    """

    __slots__ = ("reason",)

    def __new__(cls, value: float, reason: str = "") -> "Score":
        self = super().__new__(cls, value)
        self.reason = reason
        return self

    def __reduce__(self):
        return (Score, (float(self), self.reason))

    def __repr__(self) -> str:
        return f"Score({float(self)!r}, {self.reason!r})"


def reason_of(value: float) -> str:
    """The reason attached to a reward value ('' for a plain float)."""
    return getattr(value, "reason", "")
