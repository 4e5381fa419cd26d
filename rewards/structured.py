"""Structured-output reward: JSON that parses, matches a JSON Schema, and holds
the expected values."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from thinkgym.rewards.score import Score
from thinkgym.rewards.timeout import DEFAULT_TIMEOUT, CallTimeout, call_with_timeout

MAX_JSON_CHARS = 1_000_000
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)
_ANSWER_CLOSE = "</answer>"
_ANSWER_OPEN = "<answer>"


def extract_json_text(completion: str) -> str | None:
    """The text meant as JSON: the last ``<answer>`` block, else the last fenced
    block (```json or plain ```), else the whole completion. Fences inside an
    answer block are removed. ``None`` when nothing looks like JSON."""
    text = completion
    close = text.rfind(_ANSWER_CLOSE)
    if close != -1:
        open_ = text.rfind(_ANSWER_OPEN, 0, close)
        if open_ != -1:
            text = text[open_ + len(_ANSWER_OPEN):close]
    fences = _FENCE.findall(text)
    if fences:
        text = fences[-1]
    text = text.strip()
    return text if text[:1] in ("{", "[") else None


def check_schema(schema: dict) -> None:
    """Raise ``jsonschema.SchemaError`` if ``schema`` is not valid for its own draft
    (``$schema``; draft 2020-12 when absent)."""
    jsonschema.validators.validator_for(schema).check_schema(schema)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _judge(text: str, schema: dict | None, expected: dict | None) -> Score:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Score(0.0, f"invalid_json: {str(exc)[:80]}")
    if schema is not None:
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            return Score(0.0, f"invalid_schema: {exc.message[:120]}")
        error = jsonschema.exceptions.best_match(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            return Score(0.0, f"schema_violation at {where}: {error.message[:120]}")
    for field, want in (expected or {}).items():
        if not isinstance(value, dict) or field not in value:
            return Score(0.0, f"missing_field: {field}")
        if not _same(value[field], want):
            return Score(0.0, f"wrong_value: {field}")
    return Score(1.0, "correct")


def json_reward(completion: str, schema: dict | None = None, expected: dict | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> float:
    """1.0 iff the completion's JSON parses, validates against ``schema`` (JSON
    Schema, draft 7 or 2020-12 by its ``$schema``) and, when ``expected`` is given,
    each listed top-level field equals its expected value.

    Validation runs under a hard time limit: a schema ``pattern`` can backtrack
    catastrophically on a hostile string.
    """
    if not isinstance(completion, str):
        return Score(0.0, "not_a_string")
    text = extract_json_text(completion)
    if text is None:
        return Score(0.0, "no_json_found")
    if len(text) > MAX_JSON_CHARS:
        return Score(0.0, "json_too_long")
    try:
        return call_with_timeout(_judge, text, schema, expected, timeout=timeout)
    except CallTimeout:
        return Score(0.0, "timeout")
