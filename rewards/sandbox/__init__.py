"""Run untrusted programs against tests, isolated, in parallel, with unforgeable verdicts.

    >>> from thinkgym.rewards.sandbox import Job, SandboxPool
    >>> with SandboxPool() as pool:
    ...     [r.reason for r in pool.run_many([Job("def f():\\n    return 1", "assert f() == 1")])]
    ['passed']

See ``isolation.py`` for the isolation levels, ``zygote.py`` for how a run is
executed, ``harness.py`` and ``verdict.py`` for how its verdict is made unforgeable.

A run the sandbox itself fails (not the program) is retried, and if it still fails
its :class:`RunResult` has ``infra_error`` set and a reason ``sandbox_error: ...``:
it says nothing about the program. :func:`isolation_warning` says when runs get a
weaker level than this machine should give them.
"""

from .isolation import ENV_VAR, LEVELS
from .pool import (Job, Limits, RunResult, SandboxPool, SandboxUnavailable, default_pool,
                   isolation_info, isolation_warning, resolve_level, run, run_many)

__all__ = ["ENV_VAR", "LEVELS", "Job", "Limits", "RunResult", "SandboxPool", "SandboxUnavailable",
           "default_pool", "isolation_info", "isolation_warning", "resolve_level", "run", "run_many"]
