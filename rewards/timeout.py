"""Hard time limits for reward code that may hang, on any thread, in any process.

math-verify's own timeout uses SIGALRM, which only works on the main thread, and
some hangs happen inside C (sympy evaluating ``10^{10^{10}}`` is one long integer
power) where no Python-level interrupt reaches. So bounded calls run in a small
pool of persistent helper processes (one per concurrent caller), which are killed
and replaced when a call overruns. The helpers are plain ``subprocess`` children,
so this also works inside daemonic worker processes and needs no ``__main__`` guard.

A round trip costs tens of microseconds, far below the cost of the checks it guards.
"""

from __future__ import annotations

import atexit
import importlib
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from thinkgym.rewards.sandbox import wire

DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = 120.0  # starting a helper and importing the checked code's modules; not part of a call's budget


class CallTimeout(TimeoutError):
    """A bounded call ran past its time limit (its helper process was killed)."""


class _Helper:
    """One helper process running :func:`_serve` on its stdin/stdout, with
    ``preload`` modules imported up front."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from thinkgym.rewards.timeout import _serve; _serve()", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def call(self, fn: Callable, args: tuple, kwargs: dict, timeout: float) -> Any:
        wire.send(self.proc.stdin.fileno(), (fn, args, kwargs))
        try:
            # The helper acknowledges once it has unpickled the call (imports done);
            # only then does the call's own time limit start.
            wire.recv(self.proc.stdout.fileno(), STARTUP_TIMEOUT)
            ok, value = wire.recv(self.proc.stdout.fileno(), timeout)
        except TimeoutError:
            raise CallTimeout from None
        except EOFError as exc:
            raise EOFError(f"helper process exited ({exc})") from None
        if not ok:
            raise value
        return value

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


_idle: list[_Helper] = []
_lock = threading.Lock()
_owner_pid = os.getpid()


def prestart(*modules: str) -> None:
    """Start a helper now, importing ``modules`` (those of the code it will run),
    so that the first bounded call does not wait seconds for an interpreter and
    its imports. Scoring workers call this as they start."""
    helper = _Helper(modules)
    with _lock:
        _adopt()
        _idle.append(helper)


def _adopt() -> None:
    """Forget the helpers of the parent after a fork: they are not ours. Under ``_lock``."""
    global _owner_pid
    if _owner_pid != os.getpid():
        _idle.clear()
        _owner_pid = os.getpid()


def call_with_timeout(fn: Callable, *args: Any, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
    """Return ``fn(*args, **kwargs)``, computed in a helper process.

    ``fn`` must be importable by reference (a module-level function). Raises
    :class:`CallTimeout` if the call takes longer than ``timeout`` seconds, and
    re-raises any exception ``fn`` raised. Safe to call from any thread.
    """
    with _lock:
        _adopt()
        helper = _idle.pop() if _idle else None
    if helper is None:
        helper = _Helper()
    try:
        result = helper.call(fn, args, kwargs, timeout)
    except (CallTimeout, EOFError, OSError):
        helper.kill()
        raise
    except BaseException:
        with _lock:
            _idle.append(helper)
        raise
    with _lock:
        _idle.append(helper)
    return result


@atexit.register
def _shutdown() -> None:
    with _lock:
        for helper in _idle if _owner_pid == os.getpid() else ():
            helper.kill()
        _idle.clear()


def _exit_when_orphaned(parent: int) -> None:
    # A call stuck in C never reads the closed stdin: watch the parent instead.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _raise(exc: Exception) -> None:
    raise exc


def _serve() -> None:
    """Helper loop: import the modules named on the command line, then read
    (fn, args, kwargs), acknowledge, reply (ok, value), until stdin closes."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    sys.stdout = sys.stderr  # stray prints from checked code (or its imports) must not corrupt the channel
    for module in sys.argv[1:]:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - only a head start: the call itself imports what it needs and reports
            pass
    while True:
        try:
            call = wire.recv(stdin)
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a function this interpreter cannot import
            call = (_raise, (exc,), {})
        wire.send(stdout, None)
        fn, args, kwargs = call
        try:
            reply = (True, fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            reply = (False, exc)
        try:
            wire.send(stdout, reply)
        except Exception as exc:  # noqa: BLE001 - not picklable (then nothing was written)
            wire.send(stdout, (False, TypeError(f"unpicklable result: {exc}")))
