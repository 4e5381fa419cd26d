"""Countdown reward (TinyZero): reach a target from given numbers with + - * / and parentheses.

Each of the given numbers must be used exactly once (TinyZero's rule), no other
number may appear, and the expression must equal the target exactly. The
expression is read with :mod:`ast` and evaluated by walking its tree with exact
fractions: nothing is ever executed, and only integers, the four operators,
unary minus and parentheses are accepted, so ``__import__('os')`` or
``2**100000`` are invalid expressions, not code or work.
"""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from fractions import Fraction
from typing import Iterable

from thinkgym.rewards.math_answer import last_answer_tag, last_boxed
from thinkgym.rewards.score import Score

MAX_EXPRESSION_CHARS = 200
"""Longer answers score 0 (``expression_too_long``): real solutions are a few dozen characters."""

REASONS = (
    "correct",
    "no_answer_found",
    "expression_too_long",
    "invalid_expression",
    "wrong_numbers",
    "division_by_zero",
    "wrong_value",
)
"""Every reason :func:`countdown_reward` gives."""

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
# LaTeX spellings of the operators, common inside \boxed{}.
_LATEX_OPERATORS = {"\\times": "*", "\\cdot": "*", "\\div": "/", "×": "*", "÷": "/"}
# Only ASCII digits, operators, parentheses and spaces reach ast.parse: this rules
# out names, calls, hex or underscored literals and exponents before any parsing.
_ALLOWED_RE = re.compile(r"[0-9+\-*/() \t\n]*")


class _InvalidExpression(ValueError):
    """The expression uses something other than integers, + - * /, unary minus and parentheses."""


def extract_expression(completion: str) -> str | None:
    """The content of the last ``<answer>...</answer>``, else of the last ``\\boxed{}``, or None.

    A trailing ``= 9`` is dropped (``(1+2)*3 = 9`` -> ``(1+2)*3``): only the left
    side is scored, as the expression that was written out.
    """
    found = last_answer_tag(completion)
    if found is None:
        found = last_boxed(completion)
    if found is None:
        return None
    for latex, ascii_op in _LATEX_OPERATORS.items():
        found = found.replace(latex, ascii_op)
    return found.split("=", 1)[0].strip()


def _numbers(node: ast.AST) -> list[int]:
    """The integers an expression tree uses; raises _InvalidExpression on any other construct."""
    if isinstance(node, ast.Expression):
        return _numbers(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _numbers(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _numbers(node.left) + _numbers(node.right)
    raise _InvalidExpression(type(node).__name__)


def _value(node: ast.AST) -> Fraction:
    """The exact value of a tree :func:`_numbers` accepted; raises ZeroDivisionError."""
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp):
        return -_value(node.operand)
    return _OPERATORS[type(node.op)](_value(node.left), _value(node.right))


def countdown_reward(completion: str, target: int, numbers: Iterable[int]) -> Score:
    """1.0 if the completion's expression uses exactly ``numbers`` and equals ``target``, else 0.0.

    Returns a :class:`Score` whose reason is one of :data:`REASONS`. Never
    raises on any completion string, and takes microseconds.
    """
    expression = extract_expression(completion)
    if expression is None:
        return Score(0.0, "no_answer_found")
    if len(expression) > MAX_EXPRESSION_CHARS:
        return Score(0.0, "expression_too_long")
    if not expression or not _ALLOWED_RE.fullmatch(expression):
        return Score(0.0, "invalid_expression")
    try:
        tree = ast.parse(expression, mode="eval")
        used = _numbers(tree)
    except (SyntaxError, _InvalidExpression, MemoryError, RecursionError):
        # SyntaxError also covers leading zeros and nesting beyond the parser's limit.
        return Score(0.0, "invalid_expression")
    if Counter(used) != Counter(int(n) for n in numbers):
        return Score(0.0, "wrong_numbers")
    try:
        value = _value(tree)
    except ZeroDivisionError:
        return Score(0.0, "division_by_zero")
    return Score(1.0, "correct") if value == target else Score(0.0, "wrong_value")
