"""The R1-Zero think format as a wrapper for any thinkgym environment."""

from __future__ import annotations

import gymnasium

from thinkgym.envs.core import Reward, TextEnv
from thinkgym.rewards.format import tag_count_reward, think_format_reward

FORMAT_INSTRUCTION = ("First think through the problem inside <think> </think> tags, then give only the final "
                      "answer inside <answer> </answer> tags.")


class ThinkFormat(gymnasium.Wrapper):
    """Adds ``think_format_reward`` as a reward component of weight ``weight``,
    and, with ``tag_count``, ``tag_count_reward`` (partial credit, 0.25 a
    well-placed tag: a signal while full marks are still rare) of that weight.

    The components join the wrapped env's own rewards, so ``step``, ``score`` and
    batch scoring (``env.unwrapped.score_many``) all include them. A chat-style env
    without a system message gets one asking for the format; an ``r1_zero``-style
    env already asks for it in its template.
    """

    def __init__(self, env: gymnasium.Env, weight: float | None = 1.0, tag_count: float | None = None):
        super().__init__(env)
        base: TextEnv = env.unwrapped
        if not isinstance(base, TextEnv):
            raise TypeError(f"ThinkFormat wraps thinkgym text environments, got {type(base).__name__}")
        if weight is not None:
            base.add_reward(Reward("think_format", think_format_reward, weight))
        if tag_count is not None:
            base.add_reward(Reward("tag_count", tag_count_reward, tag_count))
        if base.style == "chat" and not base.system:
            base.system = FORMAT_INSTRUCTION
