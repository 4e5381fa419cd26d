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

    ``infra_error=True`` marks a value the checker could not establish because its
    own machinery failed (the code sandbox: reason ``"sandbox_error: ..."``). The
    value (0.0) says nothing about the completion: drop it rather than learn from it.
    """

    __slots__ = ("reason", "infra_error")

    def __new__(cls, value: float, reason: str = "", infra_error: bool = False) -> "Score":
        self = super().__new__(cls, value)
        self.reason = reason
        self.infra_error = infra_error
        return self

    def __reduce__(self):
        return (Score, (float(self), self.reason, self.infra_error))

    def __repr__(self) -> str:
        flag = ", infra_error=True" if self.infra_error else ""
        return f"Score({float(self)!r}, {self.reason!r}{flag})"


def reason_of(value: float) -> str:
    """The reason attached to a reward value ('' for a plain float)."""
    return getattr(value, "reason", "")


def is_infra_error(value: float) -> bool:
    """Whether a reward value is an infrastructure failure, not a verdict (False for a plain float)."""
    return getattr(value, "infra_error", False)
