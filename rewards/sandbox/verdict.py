"""The report format and the verdict on one run (pure functions, no I/O).

The harness writes one report on a dedicated pipe, then ``os._exit``s::

    THINKGYM <nonce>
    <number of cases>
    P | F <reason> | N        one line per case: passed, failed, not run
    <abort reason> | -       why the run stopped outside any case
    END <nonce>

The nonce is fresh per run and never enters the program's globals. The supervisor
accepts the report only if it is exactly this, once, with the right nonce and the
expected number of cases; exit codes and printed text count for nothing.
"""

from __future__ import annotations

import os
import signal

MAX_REPORT_BYTES = 1 << 20
MAX_REASON_CHARS = 200
# Reasons that start "sandbox_error:" say the sandbox failed, not the program. Only
# trusted code writes them: every reason a program can cause starts with its own kind.
INFRA_ERROR = "sandbox_error"


def clean_reason(text: str) -> str:
    """One short line: reasons end up in logs and metrics."""
    return " ".join(text.split())[:MAX_REASON_CHARS]


def format_report(nonce: str, cases: list, abort: str) -> bytes:
    """``cases``: True (passed), a reason string (failed) or None (not run)."""
    lines = [f"THINKGYM {nonce}", str(len(cases))]
    lines += ["P" if c is True else "N" if c is None else "F " + clean_reason(c) for c in cases]
    lines += [clean_reason(abort) if abort else "-", f"END {nonce}", ""]
    return "\n".join(lines).encode()


def parse_report(data: bytes, nonce: str, n_cases: int) -> tuple[int, str] | None:
    """(cases passed, reason) from a genuine report, or None for anything else."""
    try:
        lines = data.decode().split("\n")
    except UnicodeDecodeError:
        return None
    if (len(lines) != n_cases + 5 or lines[0] != f"THINKGYM {nonce}" or lines[1] != str(n_cases)
            or lines[-2] != f"END {nonce}" or lines[-1] != "" or not lines[-3]):
        return None
    cases, abort = lines[2:2 + n_cases], lines[-3]
    if any(c not in ("P", "N") and not c.startswith("F ") for c in cases):
        return None
    passed = cases.count("P")
    failures = [c[2:] for c in cases if c.startswith("F ")]
    if failures:
        return passed, failures[0]
    if abort != "-":
        return passed, abort
    if passed < n_cases:
        return passed, f"not_run: case {cases.index('N') + 1} of {n_cases}"
    return passed, "passed"


def _exit_reason(status: int | None, timed_out: bool) -> str:
    """Why a run that sent no report ended."""
    if timed_out or status is None:
        return "timeout"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "timeout"  # CPU-time limit
        return f"crashed: signal {sig}"
    return "exited_early"


def decide(report: bytes, nonce: str, n_cases: int, status: int | None, timed_out: bool) -> tuple[int, str]:
    """(cases passed, reason) for one run; zero passed unless a genuine report came."""
    if not report:
        return 0, _exit_reason(status, timed_out)
    parsed = parse_report(report, nonce, n_cases) if len(report) <= MAX_REPORT_BYTES else None
    if parsed is None:
        return 0, "forged_result"
    return parsed
