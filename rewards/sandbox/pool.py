"""The caller's side: a pool of zygote slots, isolation detection, the batch API."""

from __future__ import annotations

import atexit
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import isolation, verdict, wire
from .cases import prepare_tests

_SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__))
_BOOT = f"import sys; sys.path.insert(0, {_SANDBOX_DIR!r}); import zygote; zygote.main()"
# The zygote's whole environment: nothing of the caller's leaks into a run.
_ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_START_TIMEOUT = 60.0   # a zygote imports its modules once; generous for loaded machines
_GRACE = 10.0           # beyond a run's own deadline before its slot is declared broken
# Pauses before each retry of a run the sandbox itself failed (the count is the number
# of retries). Such failures are mostly transient: a fork that met a full process
# table, a zygote too slow to start on a loaded machine.
RETRY_PAUSES = (0.2, 1.0)


class SandboxUnavailable(RuntimeError):
    """The requested isolation level cannot be set up on this machine."""


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits."""
    timeout_s: float = 5.0               # wall clock, from fork to the last test
    cpu_s: float = 5.0                   # CPU time of each process (RLIMIT_CPU, rounded up)
    memory_bytes: int = 1 << 30          # address space of each process (RLIMIT_AS)
    max_processes: int = 64              # processes and threads (RLIMIT_NPROC)
    max_file_bytes: int = 16 << 20       # largest file it may write (RLIMIT_FSIZE)
    max_open_files: int = 256            # RLIMIT_NOFILE
    max_output_bytes: int = 64 << 10     # kept of stdout and of stderr each; the rest is drained
    tmpfs_bytes: int = 64 << 20          # size of its private /tmp (namespace levels)


@dataclass(frozen=True)
class Job:
    """A program and the tests to run against it."""
    code: str
    tests: str
    entry_point: str | None = None       # HumanEval style: tests define check(candidate)
    limits: Limits | None = None         # None: the pool's limits


@dataclass(frozen=True)
class RunResult:
    """What happened to one job. ``passed`` counts test cases, out of ``total``."""
    passed: int
    total: int
    reason: str                          # "passed", or why not
    stdout: bytes = b""
    stderr: bytes = b""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason == "passed"

    @property
    def infra_error(self) -> bool:
        """The sandbox failed, not the program: this result says nothing about the program."""
        return self.reason.startswith(verdict.INFRA_ERROR + ":")


class _Zygote:
    """One slot's zygote process and the socket to it."""

    def __init__(self, level: str) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, level, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=_ZYGOTE_ENV, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        self.sock = ours
        try:
            hello = wire.recv(ours.fileno(), _START_TIMEOUT)
        except EOFError:
            hello = {"ok": False, "error": "zygote exited"}
        except OSError as exc:
            hello = {"ok": False, "error": f"no answer: {exc!r}"}
        if not hello["ok"]:
            self.close()
            raise SandboxUnavailable(f"{level}: {hello['error']}")

    def run(self, request: dict, timeout: float) -> dict:
        wire.send(self.sock.fileno(), request)
        try:
            answer = wire.recv(self.sock.fileno(), timeout)
        except EOFError:
            raise EOFError("zygote exited") from None
        if "error" in answer:
            raise EOFError(f"zygote quit: {answer['error']}")
        return answer

    def close(self) -> None:
        """Kill the zygote's process group (its supervisors); their runs die with them."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.sock.close()


# Imports a module the zygote did not preload: the run's uid must be able to read Python.
_PROBE = Job("import colorsys\ndef probe():\n    return 1\n", "assert probe() == 1\n")
_probed: dict[str, str | None] = {}   # level -> None if it works, else why not
_probe_lock = threading.Lock()


def _probe(level: str) -> str | None:
    """None if a real run at ``level`` passes on this machine, else the reason it does not."""
    with _probe_lock:
        if level not in _probed:
            try:
                zygote = _Zygote(level)
            except SandboxUnavailable as exc:
                _probed[level] = str(exc)
            else:
                try:
                    answer = zygote.run(_request(_PROBE, Limits()), Limits().timeout_s + _GRACE)
                    _probed[level] = None if answer["reason"] == "passed" else f"{level}: {answer['reason']}"
                except (OSError, EOFError) as exc:
                    _probed[level] = f"{level}: {exc!r}"
                finally:
                    zygote.close()
        return _probed[level]


def resolve_level(requested: str | None = None) -> str:
    """The isolation level to use: ``requested``, else $THINKGYM_SANDBOX_ISOLATION, else the
    strongest that works here. A level asked for by name must work (no silent fallback)."""
    requested = requested or os.environ.get(isolation.ENV_VAR) or "auto"
    if requested != "auto":
        if requested not in isolation.LEVELS:
            raise ValueError(f"unknown sandbox isolation {requested!r}; expected auto or one of {isolation.LEVELS}")
        why = _probe(requested)
        if why is not None:
            raise SandboxUnavailable(f"isolation level {requested!r} is unavailable: {why}")
        return requested
    candidates = isolation.LEVELS if os.geteuid() == 0 else isolation.LEVELS[1:]
    for level in candidates:
        if _probe(level) is None:
            return level
    raise SandboxUnavailable("no isolation level works here: "
                             + "; ".join(str(_probed.get(level)) for level in candidates))


def isolation_info(requested: str | None = None) -> dict:
    """The active isolation level, what it protects against, and why stronger ones are not
    used; with a ``"warning"`` (see :func:`isolation_warning`) when there is one."""
    level = resolve_level(requested)
    info = isolation.describe(level)
    needs_root = "needs root" if os.geteuid() else None
    info["unavailable"] = {lvl: why for lvl in isolation.LEVELS[:isolation.LEVELS.index(level)]
                           if (why := _probed.get(lvl) or (needs_root if lvl == "namespaces" else None))}
    warning = isolation_warning(requested)
    if warning:
        info["warning"] = warning
    return info


def isolation_warning(requested: str | None = None) -> str | None:
    """None if runs get the strongest level this process can give them (namespaces as
    root, user-namespaces otherwise), else a one-line warning that names the level in
    force, why the stronger one is not used, and the protections that are lost.

    ``requested`` as for :func:`resolve_level`; None means the level the default pool uses.
    """
    level = resolve_level(requested)
    best = isolation.LEVELS[0] if os.geteuid() == 0 else isolation.LEVELS[1]
    if isolation.LEVELS.index(level) <= isolation.LEVELS.index(best):
        return None
    why = _probed.get(best) or f"asked for by argument or ${isolation.ENV_VAR}"
    ours, theirs = isolation.describe(level), isolation.describe(best)
    lost = [key for key, value in theirs.items() if value is True and ours[key] is not True]
    return (f"sandbox isolation is {level!r}, weaker than {best!r} on this machine ({why}); "
            f"runs lose: {', '.join(lost)}")


def _request(job: Job, limits: Limits) -> dict:
    prepared = prepare_tests(job.tests, job.entry_point)
    return {"source": job.code, "tests": prepared.code, "n_cases": prepared.n_cases,
            "entry_point": job.entry_point, "limits": asdict(limits)}


class SandboxPool:
    """Zygote slots that run jobs in parallel; safe to share between threads.

    ``workers`` defaults to the CPUs this process may use; ``isolation`` to
    :func:`resolve_level`'s choice. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, workers: int | None = None, isolation: str | None = None,
                 limits: Limits | None = None) -> None:
        self.level = resolve_level(isolation)
        self.limits = limits or Limits()
        self.workers = workers or len(os.sched_getaffinity(0))
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.workers):
            self._idle.put(None)  # slots start their zygote on first use
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="thinkgym-sandbox")
        self._closed = False

    def run(self, job: Job) -> RunResult:
        """Run one job; blocks while all slots are busy. Raises ValueError for tests that do not parse.

        A run the sandbox itself failed is retried after each of :data:`RETRY_PAUSES`;
        if it still fails, the result says so (``infra_error``, reason ``sandbox_error: ...``).
        """
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        limits = job.limits or self.limits
        request = _request(job, limits)
        result = self._attempt(request, limits)
        for pause in RETRY_PAUSES:
            if not result.infra_error:
                break
            time.sleep(pause)  # the slot is free meanwhile
            result = self._attempt(request, limits)
        return result

    def _attempt(self, request: dict, limits: Limits) -> RunResult:
        """Run ``request`` once, on the next free slot."""
        zygote = self._idle.get()
        try:
            if zygote is None:
                zygote = _Zygote(self.level)
            answer = zygote.run(request, limits.timeout_s + _GRACE)
        except (OSError, EOFError, SandboxUnavailable) as exc:
            # Our machinery failed, not the program: say so, and start afresh next time.
            if isinstance(zygote, _Zygote):
                zygote.close()
            zygote = None
            return RunResult(0, request["n_cases"], verdict.clean_reason(f"{verdict.INFRA_ERROR}: {exc!r}"))
        finally:
            self._idle.put(zygote)
        return RunResult(answer["passed"], request["n_cases"], answer["reason"], answer["stdout"],
                         answer["stderr"], answer["elapsed"])

    def run_many(self, jobs) -> list[RunResult]:
        """Run ``jobs`` on all slots at once; results in the order of ``jobs``."""
        return list(self._executor.map(self.run, jobs))

    def close(self) -> None:
        """Stop every zygote (idle ones; busy ones are closed when their run returns)."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        for _ in range(self.workers):
            zygote = self._idle.get()
            if zygote is not None:
                zygote.close()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default: SandboxPool | None = None
_default_pid = 0
_default_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool (created on first use, closed at exit, renewed after a fork)."""
    global _default, _default_pid
    with _default_lock:
        if _default is None or _default_pid != os.getpid():
            _default, _default_pid = SandboxPool(), os.getpid()
        return _default


@atexit.register
def _close_default() -> None:
    if _default is not None and _default_pid == os.getpid():
        _default.close()


def run_many(jobs) -> list[RunResult]:
    """Run ``jobs`` on the default pool."""
    return default_pool().run_many(jobs)


def run(job: Job) -> RunResult:
    """Run one job on the default pool."""
    return default_pool().run(job)

