"""Math answer reward: is the final answer of a completion equal to the gold answer?

The final answer is the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``,
or ``\\boxed 5``) in the completion, else of the last ``<answer>...</answer>``
(``extraction="strict"``, the default). ``extraction="flexible"``, for models that
write "The answer is 105." and no box (lm-evaluation-harness's "flexible-extract"),
falls back to the number after the last "answer" cue, else to the last number.
Equality is mathematical and decided by math-verify: ``0.5`` equals
``\\frac{1}{2}``, ``x = 5`` equals ``5``, ``\\{1,2\\}`` equals ``\\{2,1\\}``, and
``2\\sqrt{2}`` equals ``\\sqrt{8}``.

Decisions (all follow math-verify, so the reward agrees with the tool users know):

- units and degree signs are stripped, not converted: ``5 cm`` equals ``5`` and
  ``30^\\circ`` equals ``30`` (but not ``\\frac{\\pi}{6}``);
- currency signs are ignored and thousands separators read: ``\\$1,234`` equals ``1234``;
- percentages: ``50\\%`` equals both ``50`` and ``0.5``;
- multiple choice: the letters are compared case-insensitively, so gold ``C``
  matches ``C``, ``(C)``, ``\\text{C}`` and ``c``, not ``D``;
- intervals are strict: ``(-\\infty, 3]`` is not ``x \\le 3`` nor ``(-\\infty, 3)``;
- floats match to 6 decimal places: ``0.333333`` equals ``\\frac13``, ``0.333`` does not.

Several candidate values (``5 or 6``, ``5, 6``, ``x > 4``, an interval) against a
single-valued gold answer score 0 with the reason ``hedged_answer``.

An answer in several parts may be written in several boxes (``\\boxed{1}, \\boxed{2}``),
as math-verify also reads it. When the last box alone is not the gold answer and the
gold answer has several parts (a set, a tuple, a list: anything but one value), the
boxes taken together, read as one list, are judged too; every box counts, so an extra
or a missing part fails. A single-valued gold answer is judged on the last box only,
so a list of guesses in several boxes never passes.

``\\mathrm{e}`` (Euler's number in upright type, common in Numina-style data) is read
as ``e``; math-verify reads it as an unknown symbol, or not at all.

math-verify parses and compares in a helper process under
:func:`~thinkgym.rewards.timeout.call_with_timeout` (its own SIGALRM timeouts
fail off the main thread and cannot stop a hang inside C, such as evaluating
``10^{10^{10}}``). Cheap checks (no answer, empty, too long, too deeply nested,
equal integers) run in the calling process, so the common case stays fast.
"""

from __future__ import annotations

import functools
import logging
import re

import sympy
from math_verify import parse, verify
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanFunction

from thinkgym.rewards.score import Score
from thinkgym.rewards.timeout import DEFAULT_TIMEOUT, CallTimeout, call_with_timeout

MAX_ANSWER_CHARS = 1000
"""Longer extracted answers score 0 (``answer_too_long``) without being parsed."""

MAX_NESTING = 10
"""Deeper bracket nesting scores 0 (``answer_too_complex``): the LaTeX parser's time
grows exponentially with it (``{(`` nested 10 deep takes 4 s, 50 braces over 10 s),
and real answers nest a few levels at most."""

MAX_EXPONENT = 10**6
"""A power with a larger exponent (``10^{10^{10}}``) scores 0 (``answer_too_complex``):
comparing it would compute a number with billions of digits."""

REASONS = (
    "correct",
    "wrong_answer",
    "no_answer_found",
    "empty_answer",
    "answer_too_long",
    "answer_too_complex",
    "hedged_answer",
    "unparsable_answer",
    "unparsable_gold",
    "timeout",
)
"""The reasons :func:`math_reward` gives, besides ``"checker_error: <exception type>"``
when the check itself fails (its helper process dies, or sympy raises)."""

EXTRACTIONS = ("strict", "flexible")
"""How :func:`extract_answer` finds the final answer: ``"strict"`` reads boxes and
``<answer>`` tags only; ``"flexible"`` also reads "the answer is 105" or the last number."""

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)  # an escape, or a brace
_BOX_TOKEN_RE = re.compile(r"[^\s${}]+")
_INT_RE = re.compile(r"-?\d{1,100}")
_EULER_RE = re.compile(r"\\mathrm\s*(?:\{\s*e\s*\}|e(?![A-Za-z]))")  # \mathrm{e}, \mathrm e
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# A number that does not start inside a word, a decimal, a TeX group or a power
# (``x2``, ``x_1``, ``.5``, ``\frac{3}{4}``, ``x^2``: reading 3 out of ``\frac{3}{4}`` would
# pass a wrong answer). Linear by construction: past the first digit every part is
# optional and its backtracking bounded, so a try fails within a few characters
# or matches, and finditer never reads a matched character twice.
_NUMBER = r"(?<![\w.{^])-?(?:\d{1,3}(?:,\d{3}(?!\d))+|\d+)(?:\.\d+)?(?:/\d+)?"
_FLEXIBLE_TOKEN_RE = re.compile(rf"(?P<cue>\banswer\b)|(?P<number>{_NUMBER})|\n", re.IGNORECASE)


class _DropDisabledTimeoutWarning(logging.Filter):
    """Hide math-verify's warning that its timeout is off: ours replaces it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())


# ---------------------------------------------------------------- extraction
def _braced(text: str, start: int) -> str | None:
    """The content of the ``{...}`` group opening at ``text[start]``, or None if unclosed.

    Escaped braces (``\\{``, ``\\}``) are content, not grouping.
    """
    depth = 0
    for token in _BRACE_TOKEN_RE.finditer(text, start):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : token.start()]
    return None


def _box_content(text: str, box: re.Match) -> tuple[str, int] | None:
    """The content of the box that ``box`` (a ``\\boxed`` match) opens, and the index just
    after the box; None if it is unclosed or empty of any token."""
    if text.startswith("{", box.end()):
        content = _braced(text, box.end())
        return None if content is None else (content, box.end() + len(content) + 2)
    # ``\boxed 5.``: one TeX token, in practice the word up to a space or ``$``;
    # the sentence's full stop is not part of it.
    token = _BOX_TOKEN_RE.match(text, box.end())
    return (token.group().rstrip(".,;"), token.end()) if token else None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed``/``\\fbox`` in ``text``; None if there is none or it is unclosed.

    Only the last one is read, so this is linear in ``len(text)`` on any string.
    """
    last = None
    for last in _BOX_RE.finditer(text):
        pass
    found = None if last is None else _box_content(text, last)
    return None if found is None else found[0]


def boxed_answers(text: str) -> list[str]:
    """The contents of all the boxes of ``text``, in order, without math delimiters.

    A box inside a box is part of its content, not a box of its own. Empty when
    any box is unclosed (a truncated completion has no final list of boxes).
    Each character is read once or twice, so this is linear in ``len(text)``.
    """
    found = []
    start = 0
    while (box := _BOX_RE.search(text, start)) is not None:
        content = _box_content(text, box)
        if content is None:
            return []
        found.append(_strip_delimiters(content[0]))
        start = content[1]
    return found


def last_answer_tag(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>``, or None."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    return text[start + len("<answer>") : end] if start >= 0 else None


def _strip_delimiters(text: str) -> str:
    """``text`` without surrounding whitespace and one pair of math delimiters (``$5$`` -> ``5``)."""
    text = text.strip()
    for left, right in _DELIMITERS:
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def _check_extraction(extraction: str) -> None:
    """Raise ValueError unless ``extraction`` is one of :data:`EXTRACTIONS`."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction must be one of {', '.join(map(repr, EXTRACTIONS))}, not {extraction!r}")


def _flexible_number(text: str) -> str | None:
    """The number after the last "answer" cue of ``text``, else its last number; None if it has no number.

    A cue is the word "answer" in any case ("The answer is", "**Answer:**", "final
    answer"); its number is the first one after it on the same line, and a cue
    without one is skipped. A cue wins over numbers after it ("The answer is 105.
    That took 3 steps." gives 105): checks and asides follow the answer. A number
    has an optional minus, thousands separators (``1,234``, returned as ``1234``),
    decimals and a ``/b`` denominator; a sentence's full stop is not a decimal
    point. One pass over ``text``: linear on any string.
    """
    cued = last = None
    waiting = False  # a cue on this line has not had its number yet
    for token in _FLEXIBLE_TOKEN_RE.finditer(text):
        if token.lastgroup == "cue":
            waiting = True
        elif token.lastgroup == "number":
            last = token.group()
            if waiting:
                cued, waiting = last, False
        else:  # a line break ends a cue's reach
            waiting = False
    found = last if cued is None else cued
    return None if found is None else found.replace(",", "")


def extract_answer(completion: str, extraction: str = "strict") -> str | None:
    """The final answer of a completion, or None when it gives none.

    ``"strict"``: the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` /
    ``\\boxed 5`` (nested braces handled), else of the last ``<answer>...</answer>``,
    with surrounding whitespace and math delimiters (``$...$``, ``\\(...\\)``)
    removed. A last ``\\boxed{`` that is never closed (a truncated completion)
    counts as no box. ``"flexible"``: the strict answer when there is one, else
    :func:`_flexible_number`'s. Any other ``extraction`` raises ValueError.
    Runs in linear time on any string. One answer per completion, whatever
    the gold answer: :func:`math_reward` may also read all the boxes together
    (:func:`boxed_answers`) against a gold answer with several parts.
    """
    _check_extraction(extraction)
    found = last_boxed(completion)
    if found is None:
        found = last_answer_tag(completion)
    if found is not None:
        return _strip_delimiters(found)
    return _flexible_number(completion) if extraction == "flexible" else None


def _nesting_depth(text: str) -> int:
    """The deepest nesting of brackets of any kind in ``text`` (intervals may mix kinds)."""
    depth = deepest = 0
    for char in text:
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth -= 1
    return deepest


def _precheck(text: str) -> str | None:
    """Why an extracted answer fails before parsing (empty, too long, too nested), or None."""
    if not text:
        return "empty_answer"
    if len(text) > MAX_ANSWER_CHARS:
        return "answer_too_long"
    if _nesting_depth(text) > MAX_NESTING:
        return "answer_too_complex"
    return None


# ------------------------------------------- run in the helper process
def _parse(text: str) -> list | None:
    """math-verify's parse of one answer (``[sympy object, string]``), or None if it has no math.

    The text is parsed as the content of a ``\\boxed{}``: that makes math-verify
    read the whole text as LaTeX (plain text like ``(-\\infty, 3]`` would
    otherwise be read as the number 3) and apply its normalisations (units,
    ``\\text``, thousands separators) the same way to gold and prediction.
    A Unicode degree sign is read as ``^\\circ``, which math-verify strips.
    """
    text = _upright_e_as_e(text.replace("°", "^\\circ"))
    parsed = parse("\\boxed{" + text + "}", parsing_timeout=None)
    if parsed and isinstance(parsed[0], (sympy.Basic, sympy.MatrixBase)):
        return parsed
    return None


def _upright_e_as_e(text: str) -> str:
    """``text`` with ``\\mathrm{e}`` written as ``e``, which math-verify reads as Euler's number.

    math-verify turns ``\\mathrm{e}`` into ``\\text{e}``: an unknown symbol
    (``\\mathrm{e}^2`` is not ``e^2``), dropped as a unit (``2\\mathrm{e}`` is 2) or
    unparsable (``\\frac{1}{\\mathrm{e}}``). A space keeps the ``e`` apart from a
    command or letter next to it (``\\cdot\\mathrm{e}``, ``\\mathrm{e}x``), and only
    there: ``{ e }`` does not parse.
    """

    def plain_e(match: re.Match) -> str:
        before = " " if text[match.start() - 1 : match.start()].isalpha() else ""
        after = " " if text[match.end() : match.end() + 1].isalpha() else ""
        return before + "e" + after

    return _EULER_RE.sub(plain_e, text)


@functools.lru_cache(maxsize=4096)
def _parse_gold(text: str) -> list | None:
    """:func:`_parse`, cached: the G completions of one prompt share their gold answer."""
    return _parse(text)


def _has_huge_power(expr: sympy.Basic | sympy.MatrixBase) -> bool:
    """Whether ``expr`` holds a power with a numeric exponent above :data:`MAX_EXPONENT`."""
    for power in expr.atoms(sympy.Pow):
        if power.exp.is_number:
            # evalf is cheap even for towers: mpmath keeps huge exponents symbolic.
            size = abs(power.exp.evalf(5))
            if size.is_extended_real and bool(size > MAX_EXPONENT):
                return True
    return False


def _is_single_value(expr) -> bool:
    """Not a set, tuple, matrix, equation or condition: one number or expression."""
    return not isinstance(
        expr, (sympy.Set, sympy.Tuple, sympy.MatrixBase, Relational, BooleanFunction)
    )


def _offers_several_values(expr) -> bool:
    """A list (``5, 6``), a range (``x > 4``, ``(4, 6)``) or a disjunction of values."""
    if isinstance(expr, (sympy.FiniteSet, sympy.Tuple)):
        return len(expr) > 1
    if isinstance(expr, sympy.Eq):
        return False
    return isinstance(expr, (sympy.Interval, Relational, BooleanFunction))


def _judge(gold_text: str, pred_text: str, boxes_text: str | None = None) -> str:
    """The reason for the verdict on a predicted answer against a gold answer.

    ``boxes_text``, all the boxes of the completion read as one list, is judged
    when the final answer is not correct and the gold answer has several parts;
    it can only turn the verdict to ``correct``: otherwise the final answer's
    reason stands.
    """
    gold = _parse_gold(gold_text)
    if gold is None:
        return "unparsable_gold"
    reason = _judge_parsed(gold, pred_text)
    # A single-valued gold is judged on the last box only: boxes together are a
    # list of guesses there (math-verify rejects them today; this does not rely on it).
    if reason != "correct" and boxes_text is not None and not _is_single_value(gold[0]):
        if _judge_parsed(gold, boxes_text) == "correct":
            return "correct"
    return reason


def _judge_parsed(gold: list, pred_text: str) -> str:
    """:func:`_judge` of one predicted answer, against a gold answer already parsed."""
    pred = _parse(pred_text)
    if pred is None:
        return "unparsable_answer"
    if _has_huge_power(pred[0]):
        return "answer_too_complex"
    # verify is asymmetric (assignments, equations): gold first.
    if verify(gold, pred, timeout_seconds=None):
        return "correct"
    if _is_single_value(gold[0]) and _offers_several_values(pred[0]):
        return "hedged_answer"
    return "wrong_answer"


def _gold_problem(gold_text: str) -> str | None:
    return "unparsable_gold" if _parse_gold(gold_text) is None else None


def _value_of(expr):
    """The value an assignment gives: ``x = 5`` answers 5, as math-verify reads it."""
    if isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol):
        return expr.rhs
    return expr


def _canonical(text: str) -> str | None:
    """A string that equal answers tend to share (see :func:`canonical_answer`)."""
    parsed = _parse(text)
    if parsed is None or _has_huge_power(parsed[0]):
        return None
    expr = _value_of(parsed[0])
    if isinstance(expr, sympy.FiniteSet):
        # Boxes taken together (``x = -2, x = 1``) group with ``\\{1, -2\\}``.
        expr = sympy.FiniteSet(*map(_value_of, expr.args))
    # Exact decimals, so 0.5 and 1/2 print alike.
    expr = expr.xreplace({f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)})
    if isinstance(expr, sympy.Expr):
        expr = sympy.simplify(expr)
    return str(expr)


# ---------------------------------------------------------------- public API
def _run_guarded(fn, *args, timeout: float) -> str | None:
    """``fn(*args)`` in the helper process; a timeout or a dead helper becomes a reason."""
    try:
        return call_with_timeout(fn, *args, timeout=timeout)
    except CallTimeout:
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - a reward never raises; the reason names the failure
        return f"checker_error: {type(exc).__name__}"


def _gold_text(answer: str | int | float) -> str | None:
    """The gold answer as text: a string, or a number a dataset stored as such; None otherwise."""
    if isinstance(answer, str):
        return _strip_delimiters(answer)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    return None


def _boxes_together(completion: str) -> str | None:
    """All the boxes of a completion as one list (``1, 2, 3``), or None when it has
    fewer than two, or the list fails :func:`_precheck` (then the final answer alone
    is judged)."""
    boxes = boxed_answers(completion)
    if len(boxes) < 2:
        return None
    together = ", ".join(boxes)
    return together if _precheck(together) is None else None


def math_reward(completion: str, answer: str | int | float, *, extraction: str = "strict",
                timeout: float = DEFAULT_TIMEOUT) -> Score:
    """1.0 if the completion's final answer equals ``answer`` mathematically, else 0.0.

    ``answer`` is the gold answer as LaTeX or plain text (``"1,234"``,
    ``"\\frac{1}{2}"``, ``"(-\\infty, 3]"``, ``"C"``) or a number; anything else
    (``None``) is ``unparsable_gold``. The final answer is :func:`extract_answer`'s
    with ``extraction`` (one found by the flexible fallbacks is judged like any
    other); when ``answer`` has several parts, all the boxes of the completion taken
    together may form it instead (see the module's docstring). Returns a :class:`Score` whose reason is one of
    :data:`REASONS`. Never raises on any completion or gold answer, and returns
    within about ``timeout`` seconds, on any thread; an unknown ``extraction`` (a
    setup error) raises ValueError.
    """
    _check_extraction(extraction)  # before any early return, so a bad setup always fails
    gold = _gold_text(answer)
    if gold is None:
        return Score(0.0, "unparsable_gold")
    pred = extract_answer(completion, extraction)
    if pred is None:
        return Score(0.0, "no_answer_found")
    problem = _precheck(pred)
    if problem is not None:
        return Score(0.0, problem)
    if _INT_RE.fullmatch(pred) and _INT_RE.fullmatch(gold):
        # Integers are the most common answer: compare them without a round trip
        # (an integer gold has one part, so other boxes do not matter).
        return Score(1.0, "correct") if int(pred) == int(gold) else Score(0.0, "wrong_answer")
    reason = _run_guarded(_judge, gold, pred, _boxes_together(completion), timeout=timeout)
    return Score(1.0 if reason == "correct" else 0.0, reason)


def check_gold(answer: str | int | float, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """None if a gold answer parses, else why not (``"unparsable_gold"``, ``"timeout"``...).

    Environments call it when a dataset loads, to count and show the gold
    answers that no completion could ever match.
    """
    gold = _gold_text(answer)
    if gold is None:
        return "unparsable_gold"
    return _run_guarded(_gold_problem, gold, timeout=timeout)


def canonical_answer(text: str, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """A canonical string for an extracted answer, to group equal answers in majority voting.

    Equal answers written differently usually share it (``0.5``, ``\\frac{1}{2}``
    and ``x = \\frac12`` all give ``"1/2"``; ``2\\sqrt{2}`` and ``\\sqrt{8}`` give
    ``"2*sqrt(2)"``; boxes taken together, ``x = -2, x = 1``, and ``\\{1, -2\\}``
    give ``"{-2, 1}"``), though only :func:`math_reward` decides equality. None when
    the text is empty, too long or nested, has no parsable math, or its form
    cannot be computed within ``timeout``: such answers join no group.
    """
    text = _strip_delimiters(text)
    if _precheck(text) is not None:
        return None
    try:
        return call_with_timeout(_canonical, text, timeout=timeout)
    except Exception:  # noqa: BLE001 - timeout, dead helper or sympy failure: documented as None
        return None
