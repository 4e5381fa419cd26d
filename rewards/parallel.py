"""Score many completions at once, in worker processes.

Reward functions are pure and CPU-bound (sympy, jsonschema), so a batch is
spread over a process pool sized to the machine. A reward that has a faster
batched form of its own (``fn.batch``, e.g. the code sandbox, which already runs
programs in parallel) is called through it instead.
"""

from __future__ import annotations

import atexit
import inspect
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Mapping, Sequence

from thinkgym.rewards.timeout import prestart

_pools: dict[int, ProcessPoolExecutor] = {}


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pool(workers: int, fn: Callable) -> ProcessPoolExecutor:
    if workers not in _pools:
        # forkserver: forking a parent that holds torch threads can deadlock. Each worker
        # starts its time-limit helper at once, with the reward's module imported, rather
        # than on its first bounded call (seconds, in the middle of a training step).
        context = multiprocessing.get_context("forkserver")
        module = getattr(fn, "__module__", None)
        _pools[workers] = ProcessPoolExecutor(workers, mp_context=context, initializer=prestart,
                                              initargs=(module,) if module else ())
    return _pools[workers]


@atexit.register
def _shutdown() -> None:
    for pool in _pools.values():
        pool.shutdown(cancel_futures=True)
    _pools.clear()


def reward_fields(fn: Callable) -> tuple[set[str], set[str], bool]:
    """(required, optional, takes_any) keyword fields of a reward ``fn(completion, ...)``."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    required = {p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    optional = {p.name for p in params if p.default is not p.empty}
    return required, optional, any(p.kind is p.VAR_KEYWORD for p in params)


def select_columns(fn: Callable, columns: Mapping[str, Sequence]) -> dict[str, Sequence]:
    """The columns ``fn`` takes; a clear error when one it needs is missing."""
    required, optional, takes_any = reward_fields(fn)
    missing = required - columns.keys()
    if missing:
        name = getattr(fn, "__name__", repr(fn))
        raise KeyError(f"reward {name} needs column(s) {sorted(missing)}; got {sorted(columns)}")
    return dict(columns) if takes_any else {k: v for k, v in columns.items() if k in required | optional}


def _score_chunk(fn: Callable, rows: list[tuple[str, dict]]) -> list[float]:
    return [fn(completion, **fields) for completion, fields in rows]


def score_batch(fn: Callable[..., float], completions: Sequence[str], columns: Mapping[str, Sequence[Any]] | None = None,
                workers: int | None = None) -> list[float]:
    """``[fn(completions[i], **{name: col[i] for name, col in columns.items()})]``.

    Columns ``fn`` does not take are ignored (TRL passes every dataset column);
    one it needs but that is missing raises ``KeyError``. Runs in ``workers``
    processes (default: one per core); ``fn`` must be importable by reference.
    """
    columns = select_columns(fn, columns or {})
    for name, column in columns.items():
        if len(column) != len(completions):
            raise ValueError(f"column {name!r} has {len(column)} rows for {len(completions)} completions")
    if hasattr(fn, "batch"):
        return list(fn.batch(list(completions), **{k: list(v) for k, v in columns.items()}))
    rows = [(c, {k: v[i] for k, v in columns.items()}) for i, c in enumerate(completions)]
    workers = min(workers or default_workers(), len(rows))
    if workers <= 1:
        return _score_chunk(fn, rows)
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(f"reward {fn!r} cannot be sent to worker processes ({exc}); "
                        "define it at module level or pass workers=1") from exc
    size = -(-len(rows) // (workers * 4))
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    return [r for part in _pool(workers, fn).map(_score_chunk, [fn] * len(chunks), chunks) for r in part]
