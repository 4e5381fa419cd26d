"""Format rewards: the R1-Zero ``<think>...</think><answer>...</answer>`` shape, and
DAPO's soft overlong penalty.

These are plain string scans (no regular expressions with backtracking), so they
run in linear time on any input and need no time guard.
"""

from __future__ import annotations

from thinkgym.rewards.score import Score

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def think_format_reward(completion: str) -> float:
    """1.0 iff ``completion`` is exactly ``<think>X</think> <answer>Y</answer>``.

    Whitespace is allowed around and between the two blocks; each tag appears
    exactly once; X and Y are non-empty (after stripping); nothing else is outside.
    """
    if not isinstance(completion, str):
        return Score(0.0, "not_a_string")
    for tag in TAGS:
        count = completion.count(tag)
        if count != 1:
            return Score(0.0, f"{'missing' if count == 0 else 'repeated'}_tag: {tag}")
    text = completion.strip()
    if not text.startswith(THINK_OPEN):
        return Score(0.0, "text_before_think")
    if not text.endswith(ANSWER_CLOSE):
        return Score(0.0, "text_after_answer")
    think_end = text.index(THINK_CLOSE)
    answer_start = text.index(ANSWER_OPEN)
    if answer_start < think_end:
        return Score(0.0, "answer_before_think_closed")
    if text[think_end + len(THINK_CLOSE):answer_start].strip():
        return Score(0.0, "text_between_think_and_answer")
    if not text[len(THINK_OPEN):think_end].strip():
        return Score(0.0, "empty_think")
    if not text[answer_start + len(ANSWER_OPEN):-len(ANSWER_CLOSE)].strip():
        return Score(0.0, "empty_answer")
    return Score(1.0, "correct")


def tag_count_reward(completion: str) -> float:
    """Partial format credit for early training: 0.25 per well-placed tag.

    A tag is well placed when it occurs exactly once and in its place:
    ``<think>`` opens the completion, ``</think>`` follows it, ``<answer>``
    follows ``</think>``, and ``</answer>`` follows ``<answer>`` and ends it.
    """
    if not isinstance(completion, str):
        return Score(0.0, "not_a_string")
    text = completion.strip()
    positions = {tag: text.find(tag) if text.count(tag) == 1 else -1 for tag in TAGS}
    think_open, think_close, answer_open, answer_close = (positions[t] for t in TAGS)
    placed = [
        think_open == 0,
        think_close > think_open >= 0,
        answer_open > think_close >= 0,
        answer_close > answer_open >= 0 and text.endswith(ANSWER_CLOSE),
    ]
    credit = 0.25 * sum(placed)
    missing = [tag for tag, ok in zip(TAGS, placed) if not ok]
    return Score(credit, "correct" if not missing else "misplaced_tags: " + " ".join(missing))


def overlong_penalty(num_tokens: int, max_tokens: int, buffer: int) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13).

    0 for ``num_tokens <= max_tokens - buffer``, then falling linearly to -1 at
    ``max_tokens`` (and -1 beyond it)::

        (max_tokens - buffer - num_tokens) / buffer   in the buffer zone
    """
    if not 0 < buffer <= max_tokens:
        raise ValueError(f"overlong_penalty: need 0 < buffer <= max_tokens, got buffer={buffer}, max_tokens={max_tokens}")
    expected = max_tokens - buffer
    if num_tokens <= expected:
        return Score(0.0, "within_length")
    if num_tokens >= max_tokens:
        return Score(-1.0, "overlong")
    return Score((expected - num_tokens) / buffer, "in_overlong_buffer")
