"""Verifiable rewards: pure functions ``(completion, **task_fields) -> float``."""

from thinkgym.rewards.score import Score, reason_of
from thinkgym.rewards.timeout import CallTimeout, call_with_timeout

__all__ = ["Score", "reason_of", "CallTimeout", "call_with_timeout"]
