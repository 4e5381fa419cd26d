"""Run untrusted programs against tests, isolated, in parallel, with unforgeable verdicts.

    >>> from thinkgym.rewards.sandbox import Job, SandboxPool
    >>> with SandboxPool() as pool:
    ...     [r.reason for r in pool.run_many([Job("def f():\\n    return 1", "assert f() == 1")])]
    ['passed']

See ``isolation.py`` for the isolation levels, ``zygote.py`` for how a run is
executed, ``harness.py`` and ``verdict.py`` for how its verdict is made unforgeable.
"""

from .isolation import ENV_VAR, LEVELS
from .pool import (Job, Limits, RunResult, SandboxPool, SandboxUnavailable, default_pool,
                   isolation_info, resolve_level, run, run_many)

__all__ = ["ENV_VAR", "LEVELS", "Job", "Limits", "RunResult", "SandboxPool", "SandboxUnavailable",
           "default_pool", "isolation_info", "resolve_level", "run", "run_many"]
