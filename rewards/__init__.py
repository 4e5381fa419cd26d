"""Verifiable rewards: pure functions ``(completion, **task_fields) -> float``.

Each returns a :class:`Score` (a float with a ``.reason``), never raises on any
completion, and finishes in bounded time.
"""

from thinkgym.rewards.code import code_reward, code_rewards, extract_code
from thinkgym.rewards.countdown import countdown_reward
from thinkgym.rewards.format import overlong_penalty, tag_count_reward, think_format_reward
from thinkgym.rewards.math_answer import canonical_answer, check_gold, extract_answer, math_reward
from thinkgym.rewards.parallel import score_batch
from thinkgym.rewards.score import Score, is_infra_error, reason_of
from thinkgym.rewards.structured import json_reward
from thinkgym.rewards.timeout import CallTimeout, call_with_timeout
from thinkgym.rewards.trl import as_trl

__all__ = ["Score", "reason_of", "is_infra_error", "code_reward", "code_rewards", "extract_code", "math_reward", "check_gold", "extract_answer", "canonical_answer", "countdown_reward",
           "think_format_reward", "tag_count_reward", "overlong_penalty", "json_reward", "as_trl", "score_batch",
           "CallTimeout", "call_with_timeout"]
