"""Task sets from files or the hub, checked row by row.

A task is a dict with an ``"id"`` and the fields its rewards and prompt use.
Every row of a source is checked when it loads; a bad one is named by file and
row, never dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from thinkgym.envs.core import EnvError

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def read_rows(source: str | os.PathLike | Sequence[Mapping], split: str = "train") -> tuple[str, list[dict]]:
    """Rows of ``source``: a list of dicts, a local JSONL/JSON/Parquet/CSV file,
    or a Hugging Face hub dataset name (needs network). Returns (name, rows)."""
    if not isinstance(source, (str, os.PathLike)):
        return "<rows>", [dict(r) for r in source]
    path = Path(source)
    if path.suffix in FORMATS:
        if not path.is_file():
            raise EnvError(f"dataset file not found: {path}")
        if path.suffix == ".jsonl":  # read directly: exact line numbers in errors
            return str(path), read_jsonl(path)
        import datasets
        try:
            data = datasets.load_dataset(FORMATS[path.suffix], data_files=str(path), split="train")
        except Exception as exc:  # datasets raises many types for malformed files
            raise EnvError(f"cannot read {path}: {exc}") from exc
        return str(path), data.to_list()
    if path.exists():
        raise EnvError(f"unsupported dataset file type {path.suffix!r} ({path}); use one of {sorted(FORMATS)}")
    import datasets
    try:
        data = datasets.load_dataset(str(source), split=split)
    except Exception as exc:
        raise EnvError(f"cannot load dataset {source!r} (split {split!r}) from the hub: {exc}") from exc
    return str(source), data.to_list()


def read_jsonl(path: Path) -> list[dict]:
    """The JSON-object rows of a JSONL file; a bad line is named by file and number."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EnvError(f"{path}:{number}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise EnvError(f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def build_tasks(name: str, rows: Sequence[Mapping], convert: Callable[[Mapping], dict], id_prefix: str) -> list[dict]:
    """Apply ``convert`` to each row, naming the row when it fails, and give each
    task an id (its own, else ``<id_prefix>-<row>``)."""
    tasks, seen = [], set()
    for i, row in enumerate(rows):
        try:
            task = convert(row)
        except KeyError as exc:
            raise EnvError(f"{name}: row {i} has no column {exc.args[0]!r} (columns: {sorted(row)})") from None
        except (TypeError, ValueError) as exc:
            raise EnvError(f"{name}: row {i}: {exc}") from None
        task.setdefault("id", f"{id_prefix}-{i}")
        task["id"] = str(task["id"])
        if task["id"] in seen:
            raise EnvError(f"{name}: row {i} repeats task id {task['id']!r}")
        seen.add(task["id"])
        tasks.append(task)
    if not tasks:
        raise EnvError(f"{name}: no rows")
    return tasks


def renamer(columns: Mapping[str, str] | None, required: Sequence[str], optional: Sequence[str] = ("id",)) -> Callable[[Mapping], dict]:
    """A row converter that takes ``task_field <- columns[task_field]`` (default:
    the same name) for the required and optional fields."""
    columns = dict(columns or {})
    unknown = set(columns) - set(required) - set(optional)
    if unknown:
        raise EnvError(f"column mapping names unknown task fields {sorted(unknown)}; known: {sorted({*required, *optional})}")

    def convert(row: Mapping) -> dict[str, Any]:
        task = {f: row[columns.get(f, f)] for f in required}
        task.update({f: row[columns.get(f, f)] for f in optional if columns.get(f, f) in row})
        return task

    return convert
