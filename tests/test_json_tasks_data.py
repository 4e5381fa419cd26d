"""Integrity checks for the shipped JSON-v0 task data (data/json_tasks.jsonl).

Every task must be well formed, its schema must be valid for the draft it
declares, and its reference answer must satisfy both the schema and the
task's expected values, which proves that every task is solvable.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.validators import validator_for

DATA_PATH = Path(__file__).parents[1] / "data" / "json_tasks.jsonl"

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_CLASSES = {DRAFT_07: Draft7Validator, DRAFT_2020_12: Draft202012Validator}

REQUIRED_FIELDS = ("id", "category", "instruction", "schema", "expected", "reference")
CATEGORIES = {"extraction", "generation", "nested", "array", "enum", "format"}
MIN_PER_CATEGORY = {"extraction": 25, "generation": 10, "nested": 10, "array": 10}
MIN_TOTAL = 60
MIN_2020_12 = 10
ID_RE = re.compile(r"^json-[a-z]+-\d{3}$")

_MISSING = object()


def _load() -> list[dict]:
    tasks = []
    with DATA_PATH.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            assert isinstance(obj, dict), f"line {lineno} is not a JSON object"
            tasks.append(obj)
    return tasks


TASKS = _load()


def _task_id(task: dict) -> str:
    return str(task.get("id", "?"))


def _lookup(obj, path: str):
    """Resolve a top-level name, falling back to a dotted path ("a.b")."""
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def _same(a, b) -> bool:
    """Equality that keeps bools apart from numbers (True != 1 here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_file_exists_and_has_enough_tasks():
    assert DATA_PATH.is_file()
    assert len(TASKS) >= MIN_TOTAL


def test_ids_unique_and_well_formed():
    ids = [_task_id(t) for t in TASKS]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"duplicate ids: {dupes}"
    bad = [i for i in ids if not ID_RE.match(i)]
    assert not bad, f"malformed ids: {bad}"


def test_category_minimums():
    counts = Counter(t["category"] for t in TASKS)
    for cat, minimum in MIN_PER_CATEGORY.items():
        assert counts[cat] >= minimum, f"{cat}: {counts[cat]} < {minimum}"


def test_enough_2020_12_schemas():
    n = sum(1 for t in TASKS if t["schema"].get("$schema") == DRAFT_2020_12)
    assert n >= MIN_2020_12


@pytest.mark.parametrize("task", TASKS, ids=_task_id)
def test_task_fields(task):
    missing = [f for f in REQUIRED_FIELDS if f not in task]
    assert not missing, f"missing fields: {missing}"
    assert task["category"] in CATEGORIES
    assert isinstance(task["instruction"], str) and task["instruction"].strip()
    assert "JSON" in task["instruction"], "instruction should ask for JSON"
    assert isinstance(task["schema"], dict)
    assert task["expected"] is None or isinstance(task["expected"], dict)


@pytest.mark.parametrize("task", TASKS, ids=_task_id)
def test_schema_valid_for_declared_draft(task):
    schema = task["schema"]
    declared = schema.get("$schema")
    assert declared in DRAFT_CLASSES, f"unsupported $schema: {declared!r}"
    cls = validator_for(schema)
    assert cls is DRAFT_CLASSES[declared]
    cls.check_schema(schema)


@pytest.mark.parametrize("task", TASKS, ids=_task_id)
def test_reference_validates(task):
    schema = task["schema"]
    cls = validator_for(schema)
    assert cls is DRAFT_CLASSES[schema["$schema"]]
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(task["reference"]), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("task", TASKS, ids=_task_id)
def test_expected_matches_reference(task):
    expected = task["expected"]
    if not expected:
        return
    for path, value in expected.items():
        got = _lookup(task["reference"], path)
        assert got is not _MISSING, f"reference lacks {path!r}"
        assert _same(got, value), f"{path!r}: reference {got!r} != expected {value!r}"


@pytest.mark.parametrize("task", [t for t in TASKS if t["category"] == "extraction"], ids=_task_id)
def test_extraction_expected_in_passage(task):
    expected = task["expected"]
    assert isinstance(expected, dict) and expected, "extraction tasks need expected values"
    for path, value in expected.items():
        for s in _strings(value):
            assert s in task["instruction"], f"{path!r}: {s!r} does not appear in the instruction"
