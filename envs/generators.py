"""Procedural math tasks, seeded, with difficulty knobs.

A generator is a read-only sequence of tasks: task ``i`` depends only on
``(name, seed, difficulty, i)``, so any slice of any size is reproducible and
costs nothing to store. Ids are ``<name>-<i>``.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any, Callable

from thinkgym.envs.core import EnvError


class TaskGenerator:
    """``size`` tasks made on demand by ``make(rng, **difficulty)``."""

    def __init__(self, name: str, make: Callable[..., dict], size: int, seed: int, difficulty: dict[str, Any]):
        if size < 1:
            raise EnvError(f"{name}: size must be >= 1, got {size}")
        self.name, self._make, self.size, self.seed, self.difficulty = name, make, size, seed, difficulty
        self._make(random.Random(0), **difficulty)  # reject bad knobs now, not at step 1000

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        if not -self.size <= i < self.size:
            raise IndexError(i)
        i %= self.size
        task = self._make(random.Random(f"{self.name}/{self.seed}/{i}"), **self.difficulty)
        return {"id": f"{self.name}-{i}", **task}

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def by_id(self, task_id: Any) -> dict:
        prefix, _, number = str(task_id).rpartition("-")
        if prefix != self.name or not number.isdigit() or int(number) >= self.size:
            raise EnvError(f"no task with id {task_id!r} (ids are {self.name}-0 .. {self.name}-{self.size - 1})")
        return self[int(number)]


def _check(name: str, condition: bool, message: str) -> None:
    if not condition:
        raise EnvError(f"{name}: {message}")


def arithmetic(rng: random.Random, digits: int = 2, terms: int = 2, ops: str = "+-*") -> dict:
    """``a op b op c ...`` with ``digits``-digit operands; usual precedence."""
    _check("arithmetic", 1 <= digits <= 18 and 2 <= terms <= 8 and ops and set(ops) <= set("+-*"),
           f"need 1 <= digits <= 18, 2 <= terms <= 8, ops from '+-*'; got {digits}, {terms}, {ops!r}")
    numbers = [rng.randint(10 ** (digits - 1), 10 ** digits - 1) for _ in range(terms)]
    expression = str(numbers[0])
    for n in numbers[1:]:
        expression += f" {rng.choice(ops)} {n}"
    value = eval(expression, {"__builtins__": {}})  # noqa: S307 - our own digits and operators
    return {"question": f"Compute {expression.replace('*', '×')}.", "answer": str(value)}


def linear_equation(rng: random.Random, max_coefficient: int = 9, max_solution: int = 20) -> dict:
    """``a x + b = c x + d`` with an integer solution."""
    _check("linear_equation", max_coefficient >= 2 and max_solution >= 1,
           f"need max_coefficient >= 2 and max_solution >= 1, got {max_coefficient}, {max_solution}")
    x = rng.randint(-max_solution, max_solution)
    a = rng.randint(2, max_coefficient)
    c = rng.choice([k for k in range(-max_coefficient, max_coefficient + 1) if k != a])
    b = rng.randint(-10 * max_coefficient, 10 * max_coefficient)
    d = (a - c) * x + b
    right = f"{c}x + {d}" if c else str(d)
    return {"question": f"Solve for x: {a}x + {b} = {right}.".replace("+ -", "- "), "answer": str(x)}


def fraction_arithmetic(rng: random.Random, max_denominator: int = 12, terms: int = 2) -> dict:
    """Sum/difference/product of fractions, answered in lowest terms."""
    _check("fraction_arithmetic", max_denominator >= 2 and 2 <= terms <= 5,
           f"need max_denominator >= 2 and 2 <= terms <= 5, got {max_denominator}, {terms}")
    fractions = [Fraction(rng.randint(1, max_denominator), rng.randint(2, max_denominator)) for _ in range(terms)]
    value, text = fractions[0], _latex(fractions[0])
    for f in fractions[1:]:
        op = rng.choice("+-*")
        value = value + f if op == "+" else value - f if op == "-" else value * f
        text += {"+": " + ", "-": " - ", "*": r" \times "}[op] + _latex(f)
    return {"question": f"Compute ${text}$ and give the result as a fraction in lowest terms.", "answer": _latex(value)}


def _latex(f: Fraction) -> str:
    if f.denominator == 1:
        return str(f.numerator)
    sign = "-" if f < 0 else ""
    return rf"{sign}\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"


def countdown(rng: random.Random, count: int = 4, max_number: int = 99) -> dict:
    """TinyZero's Countdown: reach ``target`` using each number once with + - * /.

    The target is the value of a random expression over the numbers, so every
    task is solvable; division only where it is exact.
    """
    _check("countdown", 2 <= count <= 6 and max_number >= 2, f"need 2 <= count <= 6 and max_number >= 2, got {count}, {max_number}")
    while True:
        numbers = [rng.randint(1, max_number) for _ in range(count)]
        order = numbers[:]
        rng.shuffle(order)
        value = Fraction(order[0])
        for n in order[1:]:
            op = rng.choice("+-*/")
            if op == "/" and value % n:
                op = rng.choice("+-*")
            value = {"+": value + n, "-": value - n, "*": value * n, "/": value / n}[op]
        if value.denominator == 1 and 0 < value <= 1000:
            break
    target = int(value)
    question = (f"Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
                "arithmetic operations (+, -, *, /) and each number must be used exactly once. "
                "Show your work in <think> </think> tags and return the final equation in <answer> </answer> "
                "tags, for example <answer> (1 + 2) / 3 </answer>.")
    return {"question": question, "target": target, "numbers": numbers}


GENERATORS: dict[str, Callable[..., dict]] = {
    "arithmetic": arithmetic,
    "linear_equation": linear_equation,
    "fraction_arithmetic": fraction_arithmetic,
    "countdown": countdown,
}


def make_generator(name: str, size: int = 100_000, seed: int = 0, **difficulty: Any) -> TaskGenerator:
    """The named generator (one of ``GENERATORS``) with its difficulty knobs."""
    if name not in GENERATORS:
        raise EnvError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    try:
        return TaskGenerator(name, GENERATORS[name], size, seed, difficulty)
    except TypeError as exc:
        raise EnvError(f"{name}: {exc}") from None
