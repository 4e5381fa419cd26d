"""Code that runs inside the sandbox: load the program, run the counted cases, report.

The program runs in this very process (no new interpreter: that costs ~95 ms), so
everything the harness needs after the program starts is bound *before* it starts:
the program may patch builtins, modules, ``os`` and this module's globals. The
test code sees a pristine copy of the builtins and of every module that was loaded
when the zygote started (see :func:`snapshot`), and every function of the program
it calls is wrapped so that its return value must be built from builtin types
(exact type checks: an object whose ``__eq__`` is always True fails the case).

This module must import nothing from the thinkgym package (see ``zygote.py``).
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
import types

import verdict

SOLUTION_FILENAME = "<solution>"
TEST_FILENAME = "<tests>"          # must match cases.TEST_FILENAME
CANDIDATE = "__thinkgym_candidate__"
PASS = "__thinkgym_pass__"
FAIL = "__thinkgym_fail__"


class NonBuiltinReturn(Exception):
    """A wrapped program function returned an object that is not plain builtin data."""


class MissingEntryPoint(Exception):
    """The program defines no callable named like the entry point."""


class Pristine:
    """Builtins and module namespaces as they were before any program ran."""

    def __init__(self) -> None:
        self.builtins = dict(builtins.__dict__)
        self.modules = {name: dict(m.__dict__) for name, m in list(sys.modules.items())
                        if type(m) is types.ModuleType}


def snapshot() -> Pristine:
    """Called once in the zygote, after preloading modules, before any program exists."""
    return Pristine()


# Every function below that runs after the program started takes the builtins it
# uses as default arguments, bound when this module was imported: the program may
# have replaced ``builtins.set``, ``types.FunctionType`` or ``marshal.loads`` by then.

def _non_builtin(value, type_=type, id_=id, set_=set, none=type(None)) -> str | None:
    """Name of the first type in ``value`` that is not plain builtin data, else None.

    Identity checks only: ``type(v) in {...}`` would hash ``type(v)``, and a
    metaclass can make that hash (and equality) say anything.
    """
    stack, seen = [value], set_()
    while stack:
        v = stack.pop()
        t = type_(v)
        if t is int or t is str or t is float or t is bool or t is none or t is bytes or t is complex:
            continue
        if t is list or t is tuple or t is set_ or t is frozenset or t is dict:
            if id_(v) not in seen:
                seen.add(id_(v))
                stack.extend(v)
                if t is dict:
                    stack.extend(v.values())
            continue
        return t.__name__
    return None


def _checked(fn, non_builtin=_non_builtin, error=NonBuiltinReturn):
    """``fn`` whose return value must pass :func:`_non_builtin`."""
    def checked(*args, **kwargs):
        value = fn(*args, **kwargs)
        bad = non_builtin(value)
        if bad is not None:
            raise error(bad)
        return value
    return checked


def _failure(exc, kind: str, filename: str, type_=type, memory=MemoryError,
             non_builtin=NonBuiltinReturn, exit_=SystemExit) -> str:
    """Reason for an exception: its type and the deepest line of ``filename`` it passed."""
    t = type_(exc)
    if t is memory:
        return "memory_limit"
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" at line {line}" if line is not None else ""
    if t is non_builtin:
        return f"non_builtin_return: {exc.args[0]}{where}"
    if t is exit_:
        return f"exited_early{where}"
    return f"{kind}: {t.__name__}{where}"


def _test_builtins(pristine: Pristine) -> dict:
    """Pristine builtins whose ``import`` hands test code pristine module copies."""
    real_import, modules, module_type = builtins.__import__, pristine.modules, types.ModuleType

    def test_import(name, globals=None, locals=None, fromlist=(), level=0, all_=all):
        key = name if fromlist else name.partition(".")[0]
        saved = modules.get(key) if level == 0 else None
        if saved is not None and all_(f in saved for f in fromlist or ()):
            copy = module_type(key)
            copy.__dict__.update(saved)
            return copy
        return real_import(name, globals, locals, fromlist, level)

    names = dict(pristine.builtins)
    names["__import__"] = test_import
    return names


def _add_program_names(names: dict, user: dict, entry_point: str | None, list_=list, type_=type,
                       str_=str, function=types.FunctionType, callable_=callable, checked=_checked,
                       missing=MissingEntryPoint) -> None:
    """Give the tests the program's names, its functions wrapped by :func:`_checked`."""
    for name, value in list_(user.items()):
        if type_(name) is str_ and not name.startswith("__"):
            names[name] = checked(value) if type_(value) is function else value
    if entry_point:
        candidate = user.get(entry_point)
        if candidate is None or not callable_(candidate):
            raise missing(entry_point)
        names[CANDIDATE] = checked(candidate)


def _write_all(fd: int, data: bytes, write=os.write, memoryview_=memoryview) -> None:
    view = memoryview_(data)
    while view:
        view = view[write(fd, view):]


def run(source: str, tests: bytes, n_cases: int, entry_point: str | None,
        pristine: Pristine, report_fd: int, nonce: str) -> None:
    """Run ``source`` then the instrumented ``tests``, report, and ``os._exit``. Never returns.

    Only the process that started here may report: a fork of the program returns
    into this function too, and would otherwise send a second report.
    """
    pid, getpid, exit_, failure = os.getpid(), os.getpid, os._exit, _failure
    format_report, add_program_names, write_all = verdict.format_report, _add_program_names, _write_all
    stdout, stderr = sys.stdout, sys.stderr
    test_code = marshal.loads(tests)
    cases: list = [None] * n_cases
    abort = ""

    def record_pass(k: int) -> None:
        if cases[k] is None:
            cases[k] = True

    def record_fail(k: int, exc: BaseException) -> None:
        cases[k] = failure(exc, "test_failed", TEST_FILENAME)

    names = {"__name__": "__tests__", "__builtins__": _test_builtins(pristine),
             PASS: record_pass, FAIL: record_fail}
    # "solution", not "__main__": an `if __name__ == "__main__":` demo block must not run.
    user = {"__name__": "solution", "__builtins__": builtins}
    try:
        code = compile(source, SOLUTION_FILENAME, "exec")
    except SyntaxError as exc:
        abort = f"syntax_error: {exc.msg} line {exc.lineno}"
    except (ValueError, MemoryError, RecursionError) as exc:  # NUL bytes, absurd nesting
        abort = f"syntax_error: {type(exc).__name__}"
    else:
        try:
            exec(code, user)
        except BaseException as exc:  # noqa: BLE001 - any escape is a reason, never a crash
            abort = failure(exc, "program_error", SOLUTION_FILENAME)
        else:
            try:
                add_program_names(names, user, entry_point)
                exec(test_code, names)
            except MissingEntryPoint:
                abort = f"entry_point_not_found: {entry_point}"
            except BaseException as exc:  # noqa: BLE001
                abort = failure(exc, "test_error", TEST_FILENAME)
    if getpid() == pid:
        write_all(report_fd, format_report(nonce, cases, abort))
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - output is best effort; the report is out
                pass
    exit_(0)
