"""``thinkgym/JSON-v0``: structured output that must match a JSON Schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Mapping

import jsonschema

from thinkgym.envs.core import Reward, TextEnv
from thinkgym.envs.tasks import build_tasks, read_rows
from thinkgym.rewards.structured import check_schema, json_reward

PROMPT = "{instruction}\n\nReply with JSON only, valid against this JSON Schema:\n```json\n{schema_text}\n```"


def _json_task(row: Mapping) -> dict:
    schema = row["schema"]
    if not isinstance(schema, dict):
        raise ValueError("schema must be a JSON object")
    try:
        check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None
    expected = row.get("expected")
    if expected is not None and not isinstance(expected, dict):
        raise ValueError("expected must be an object of field -> value")
    task = {"instruction": row["instruction"], "schema": schema, "expected": expected,
            "schema_text": json.dumps(schema, indent=2)}
    if "id" in row:
        task["id"] = row["id"]
    return task


def builtin_json_tasks() -> str:
    """Path of the structured-output tasks shipped with thinkgym."""
    return str(resources.files("thinkgym.data") / "json_tasks.jsonl")


def make_json_env(source: str | None = None, *, prompt: str = PROMPT, **env_kwargs: Any) -> TextEnv:
    """Structured-output tasks from a JSONL file with ``instruction``, ``schema``
    and optional ``expected`` (default: the tasks shipped with thinkgym)."""
    name, rows = read_rows(source or builtin_json_tasks())
    tasks = build_tasks(name, rows, _json_task, id_prefix="json")
    return TextEnv(tasks, [Reward("json", json_reward)], prompt=prompt, **env_kwargs)
