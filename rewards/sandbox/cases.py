"""Turn test source into counted cases (runs in the caller, on trusted test code).

Every top-level statement of the tests that contains an ``assert`` becomes one case,
and so does every such statement of ``check``'s body when there is an entry point
(HumanEval style). A case becomes::

    try:
        <statement>
    except BaseException as __thinkgym_exc__:   # SystemExit and friends included
        __thinkgym_fail__(k, __thinkgym_exc__)
    else:
        __thinkgym_pass__(k)

so a failing case never stops the others, and the number of cases is known here,
before the program runs: the harness must report exactly that many. Tests without
any assert are one case: the whole test code must run without an exception.

The result is compiled and marshalled once per distinct test source (cached),
because an RL batch scores many completions against the same tests.
"""

from __future__ import annotations

import ast
import functools
import marshal
from dataclasses import dataclass

TEST_FILENAME = "<tests>"
CANDIDATE = "__thinkgym_candidate__"
PASS = "__thinkgym_pass__"
FAIL = "__thinkgym_fail__"
_EXC = "__thinkgym_exc__"


@dataclass(frozen=True)
class PreparedTests:
    code: bytes      # marshalled code object of the instrumented tests
    n_cases: int


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _call(name: str, *args: ast.expr) -> ast.stmt:
    return ast.Expr(ast.Call(ast.Name(name, ast.Load()), list(args), []))


def _as_case(body: list[ast.stmt], k: int) -> ast.Try:
    handler = ast.ExceptHandler(ast.Name("BaseException", ast.Load()), _EXC,
                                [_call(FAIL, ast.Constant(k), ast.Name(_EXC, ast.Load()))])
    case = ast.Try(body, [handler], [_call(PASS, ast.Constant(k))], [])
    return ast.copy_location(case, body[0])


def _instrument(body: list[ast.stmt], first: int) -> tuple[list[ast.stmt], int]:
    """Wrap each assert-holding statement of ``body``; returns (new body, next case number)."""
    out, k = [], first
    for stmt in body:
        if _has_assert(stmt) and not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(_as_case([stmt], k))
            k += 1
        else:
            out.append(stmt)
    return out, k


@functools.lru_cache(maxsize=1024)
def prepare_tests(tests: str, entry_point: str | None) -> PreparedTests:
    """Instrument and compile ``tests``; raises ValueError if they do not parse."""
    try:
        module = ast.parse(tests, TEST_FILENAME)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise ValueError(f"tests do not parse: {exc.__class__.__name__}: {getattr(exc, 'msg', exc)}"
                         + (f" (line {line})" if line else "")) from None
    body, n = _instrument(module.body, 0)
    check = next((s for s in body if isinstance(s, ast.FunctionDef) and s.name == "check"), None)
    if entry_point and check is not None:
        check.body, n = _instrument(check.body, n)
        last = body[-1]
        body.append(ast.copy_location(_call("check", ast.Name(CANDIDATE, ast.Load())), last))
    if n == 0 and body:
        body, n = [_as_case(body, 0)], 1
    module.body = body
    ast.fix_missing_locations(module)
    return PreparedTests(marshal.dumps(compile(module, TEST_FILENAME, "exec")), n)
