"""Tests for the math answer reward: extraction, equivalence, hedging, robustness, timeouts."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import pickle
import threading
import time

import pytest

from thinkgym.rewards.math_answer import (
    EXTRACTIONS,
    MAX_ANSWER_CHARS,
    boxed_answers,
    canonical_answer,
    check_gold,
    extract_answer,
    math_reward,
)
from thinkgym.rewards.score import Score


def boxed(answer: str) -> str:
    return f"<think>Some working out.</think> So the final answer is $\\boxed{{{answer}}}$."


# (predicted answer, gold answer, correct?)
EQUIVALENCE = [
    # integers and plain numbers
    ("42", "42", True),
    ("41", "42", False),
    ("-7", "-7", True),
    ("7", "-7", False),
    ("05", "5", True),
    ("5.0", "5", True),
    ("5.5", "5", False),
    # fractions and decimals
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("1/2", "\\frac{1}{2}", True),
    ("\\dfrac{3}{2}", "1.5", True),
    ("\\frac{2}{4}", "\\frac12", True),
    ("0.25", "\\frac{1}{3}", False),
    ("0.333", "\\frac{1}{3}", False),
    ("-\\frac{3}{4}", "-0.75", True),
    # assignments and equations
    ("x = 5", "5", True),
    ("x=6", "5", False),
    ("5", "x = 5", True),
    ("y = 2x + 1", "2x+1", True),
    # sets, intervals, tuples
    ("\\{2, 1\\}", "\\{1, 2\\}", True),
    ("\\{1, 3\\}", "\\{1, 2\\}", False),
    ("(-\\infty, 3]", "(-\\infty, 3]", True),
    ("(-\\infty, 3)", "(-\\infty, 3]", False),
    ("[2, 5)", "[2,5)", True),
    ("\\left( 1, 2 \\right)", "(1, 2)", True),
    ("(1, 2, 3)", "(1,2,3)", True),
    ("(3, 2, 1)", "(1,2,3)", False),
    ("x = 2 \\text{ or } x = -2", "\\{-2, 2\\}", True),
    ("\\pm 2", "2, -2", True),
    # units, degrees, currency, thousands separators
    ("5 \\text{ cm}", "5", True),
    ("5\\,\\mathrm{cm}", "5", True),
    ("6 \\text{ cm}", "5", False),
    ("30^\\circ", "30", True),
    ("30^{\\circ}", "30^\\circ", True),
    ("30°", "30", True),
    ("30^\\circ", "\\frac{\\pi}{6}", False),
    ("\\$5", "5", True),
    ("\\$5.00", "5", True),
    ("1,234", "1234", True),
    ("1234", "1,234", True),
    ("1{,}234{,}567", "1234567", True),
    ("1,235", "1,234", False),
    # percentages: "50%" equals both 50 and 0.5 (math-verify's rule)
    ("50\\%", "50\\%", True),
    ("50", "50\\%", True),
    ("0.5", "50\\%", True),
    ("40\\%", "50\\%", False),
    # multiple choice
    ("C", "C", True),
    ("(C)", "C", True),
    ("\\text{C}", "C", True),
    ("\\textbf{(C)}", "(C)", True),
    ("D", "C", False),
    # symbolic expressions
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\pi/2", "\\frac{\\pi}{2}", True),
    ("\\frac{\\pi}{3}", "\\frac{\\pi}{2}", False),
    ("(x+1)^2", "x^2+2x+1", True),
    ("(x-1)^2", "x^2+2x+1", False),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True),
    ("10^{3}", "1000", True),
    ("\\infty", "\\infty", True),
    # matrices
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", False),
    # words
    ("\\text{Monday}", "\\text{Monday}", True),
    ("\\text{Tuesday}", "\\text{Monday}", False),
]


@pytest.mark.parametrize("pred, gold, correct", EQUIVALENCE)
def test_equivalence(pred, gold, correct):
    score = math_reward(boxed(pred), gold)
    assert isinstance(score, Score)
    assert score == (1.0 if correct else 0.0), score.reason
    assert score.reason == ("correct" if correct else "wrong_answer")


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("5 or 6", "5"),
        ("5, 6", "5"),
        ("4, 5, 6", "5"),
        ("5 \\text{ or } 6", "5"),
        ("x > 4", "5"),
        ("x \\geq 5", "5"),
        ("3 < x < 7", "5"),
        ("x = 5 \\text{ or } x = 6", "5"),
        ("\\pm 5", "5"),
    ],
)
def test_hedged_answers_score_zero(pred, gold):
    score = math_reward(boxed(pred), gold)
    assert (score, score.reason) == (0.0, "hedged_answer")


def test_a_list_is_fine_when_the_gold_is_a_list():
    assert math_reward(boxed("5, 6"), "5, 6") == 1.0
    assert math_reward(boxed("6, 5"), "\\{5, 6\\}") == 1.0


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("", "no_answer_found"),
        ("The answer is 5.", "no_answer_found"),
        ("\\boxed{}", "empty_answer"),
        ("\\boxed{   }", "empty_answer"),
        ("<answer></answer>", "empty_answer"),
        ("<answer>$$</answer>", "empty_answer"),
        ("\\boxed{5", "no_answer_found"),  # truncated: the last box never closes
        ("<answer>5", "no_answer_found"),
        ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "answer_too_long"),
        ("\\boxed{((}", "unparsable_answer"),
    ],
)
def test_missing_empty_or_unusable_answers(completion, reason):
    score = math_reward(completion, "5")
    assert (score, score.reason) == (0.0, reason)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("so \\boxed 5. Done", "5"),
        ("\\boxed {3}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("<answer>4</answer> text <answer> $x = 3$ </answer>", "x = 3"),
        ("\\boxed{9} <answer>8</answer>", "9"),  # a box wins over the answer tag
        ("<answer>1</answer>\\boxed{2", "1"),  # an unclosed last box is no box
        ("\\boxed", None),
        ("nothing here", None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_last_boxed_answer_wins_for_the_reward():
    assert math_reward("\\boxed{4} no wait, \\boxed{5}", "5") == 1.0
    assert math_reward("\\boxed{5} no wait, \\boxed{4}", "5") == 0.0


def test_answer_tag_fallback():
    assert math_reward("<think>2+3</think><answer>5</answer>", "5") == 1.0
    assert math_reward("<think>2+3</think><answer>\\frac{10}{2}</answer>", "5") == 1.0


# ------------------------------------------------------ flexible extraction
@pytest.mark.parametrize(
    "completion, expected",
    [
        ("The answer is 105.", "105"),  # a sentence's full stop is no decimal point
        ("Answer: 3/4", "3/4"),
        ("So the final answer is $-12$.", "-12"),
        ("**Answer:** 1,234", "1234"),  # thousands separators are dropped
        ("THE ANSWER IS 2.50 dollars", "2.50"),
        ("We get 12, then 7 apples.", "7"),  # no cue: the last number
        ("The answer is 105. That took 3 steps.", "105"),  # the cue wins over a later number
        ("Answer: 4\nwait, the answer is 5, not 6", "5"),  # the last cue
        ("The answer is 8.\nI hope this answer helps!", "8"),  # a cue without a number is skipped
        ("The answer is\n42", "42"),  # a cue reaches to the end of its line, then the last number counts
        ("x2 = \\frac{3}{4}, y_1 = .5, 2^{10}", "2"),  # no number inside a word, TeX group, decimal or power
        ("1,2345", "2345"),  # not a thousands separator: two numbers
        ("5-3=2", "2"),  # a minus after a digit is subtraction
        ("\\boxed{9} so the answer is 8", "9"),  # a box wins over a cue
        ("<answer>7</answer> Answer: 8", "7"),  # so does an answer tag
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_flexible_extraction(completion, expected):
    assert extract_answer(completion, "flexible") == expected


def test_flexible_answers_are_judged_and_strict_ones_unchanged():
    completion = "Adding up, the answer is 105."
    assert (math_reward(completion, "105", extraction="flexible").reason, math_reward(completion, "105").reason) == (
        "correct", "no_answer_found")
    assert math_reward("The answer is 3/4.", "\\frac{3}{4}", extraction="flexible").reason == "correct"
    assert math_reward("The answer is 1,234.", "1234", extraction="flexible").reason == "correct"
    assert math_reward("I got 7 and 9", "7", extraction="flexible").reason == "wrong_answer"
    assert math_reward("I give up.", "7", extraction="flexible").reason == "no_answer_found"
    assert math_reward("\\boxed{6} though the answer is 7", "7", extraction="flexible").reason == "wrong_answer"


def test_unknown_extraction_is_a_value_error_naming_the_modes():
    assert EXTRACTIONS == ("strict", "flexible")
    with pytest.raises(ValueError, match="'strict', 'flexible'.*'loose'"):
        extract_answer("\\boxed{1}", "loose")
    with pytest.raises(ValueError, match="'strict', 'flexible'"):
        math_reward("\\boxed{1}", None, extraction="loose")  # even when the gold alone would fail


@pytest.mark.parametrize(
    "completion, expected",
    [
        pytest.param("answer " * 200_000, None, id="cues-without-numbers"),
        pytest.param("1," * 200_000, "1", id="almost-thousands"),
        pytest.param("1,23" * 100_000, "23", id="broken-thousands"),
        pytest.param("-" * 400_000 + "7", "-7", id="minuses"),
        pytest.param("1." * 200_000, "1.1", id="almost-decimals"),
        pytest.param("1/" * 200_000, "1/1", id="almost-fractions"),
        pytest.param("x1" * 200_000, None, id="digits-inside-words"),
        pytest.param("The answer is " + "a" * 400_000 + " 5", "5", id="long-line-after-a-cue"),
    ],
)
def test_flexible_extraction_is_linear_on_adversarial_strings(completion, expected):
    # The regexes are linear by construction; a quadratic scan of these 400k
    # characters would not finish within the test run.
    assert extract_answer(completion, "flexible") == expected


def test_multiple_choice_gold_with_parentheses_and_wrong_letter():
    assert math_reward(boxed("C"), "(C)") == 1.0
    assert math_reward(boxed("B"), "(C)") == 0.0


def test_plain_text_interval_gold_is_read_as_an_interval():
    # Parsed as bare text, math-verify reads "(-\infty, 3]" as the number 3.
    assert math_reward(boxed("3"), "(-\\infty, 3]") == 0.0
    assert math_reward(boxed("(-\\infty, 3]"), "$(-\\infty, 3]$") == 1.0


def test_integer_gold_from_a_dataset_is_accepted():
    assert math_reward(boxed("72"), 72) == 1.0


def test_missing_gold_is_unparsable():
    assert check_gold(None) == "unparsable_gold"
    assert math_reward(boxed("None"), None).reason == "unparsable_gold"


@pytest.mark.parametrize("gold", ["", "\\frac{", "$$", "\\begin{"])
def test_unparsable_gold_never_makes_a_completion_correct(gold):
    assert check_gold(gold) == "unparsable_gold"
    for completion in (boxed(gold), boxed("5"), "<answer>\\frac{</answer>"):
        score = math_reward(completion, gold)
        assert score == 0.0


@pytest.mark.parametrize("gold", ["5", "1,234", "\\frac{1}{2}", "(-\\infty, 3]", "C", "(C)", "50\\%", "$x = 2$"])
def test_check_gold_accepts_good_gold(gold):
    assert check_gold(gold) is None


def test_canonical_answer_groups_equal_answers():
    assert canonical_answer("0.5") == canonical_answer("\\frac{1}{2}") == canonical_answer("x = \\frac12")
    assert canonical_answer("2\\sqrt{2}") == canonical_answer("\\sqrt{8}")
    assert canonical_answer("\\{1, 2\\}") == canonical_answer("\\{2, 1\\}")
    assert canonical_answer("3") != canonical_answer("4")
    assert canonical_answer("") is None
    assert canonical_answer("\\frac{") is None


# ---------------------------------------------------- several boxes, one answer
@pytest.mark.parametrize(
    "completion, gold",
    [
        ("The solutions are $\\boxed{(2, 2)}$ and $\\boxed{(6, 2)}$.", "(2, 2), (6, 2)"),
        ("The solutions are $\\boxed{(6, 2)}$ and $\\boxed{(2, 2)}$.", "(2, 2), (6, 2)"),
        ("So $\\boxed{1}, \\boxed{2}, \\boxed{3}$.", "\\{1, 2, 3\\}"),
        ("So $\\boxed{3}, \\boxed{1}, \\boxed{2}$.", "\\{1, 2, 3\\}"),
        ("Hence $x = \\boxed{-2}$ and $x = \\boxed{1}$.", "1, -2"),
        ("Hence $\\boxed{x = -2}$ or $\\boxed{x = 1}$.", "1, -2"),
        ("<think>two roots</think> \\boxed{\\sqrt{2}} and \\boxed{-\\sqrt{2}}", "\\pm\\sqrt{2}"),
        ("The point is $(\\boxed{1}, \\boxed{2}, \\boxed{3})$.", "(1, 2, 3)"),  # a tuple, in order
        ("\\fbox{5} and \\fbox{\\pi}", "\\pi, 5"),
    ],
)
def test_several_boxes_together_form_a_multi_part_gold(completion, gold):
    score = math_reward(completion, gold)
    assert (score, score.reason) == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, gold",
    [
        ("$\\boxed{(2, 2)}$ and $\\boxed{(6, 3)}$", "(2, 2), (6, 2)"),  # one part wrong
        ("$\\boxed{(2, 2)}$", "(2, 2), (6, 2)"),  # a part missing
        ("$\\boxed{1}, \\boxed{2}$", "\\{1, 2, 3\\}"),  # a part missing
        ("$\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}$", "\\{1, 2, 3\\}"),  # an extra part
        ("First $\\boxed{7}$; finally $\\boxed{1}, \\boxed{2}, \\boxed{3}$", "\\{1, 2, 3\\}"),  # every box counts
        ("$x = \\boxed{2}$ and $x = \\boxed{1}$", "1, -2"),
        ("$\\boxed{3}, \\boxed{2}, \\boxed{1}$", "(1, 2, 3)"),  # a tuple is ordered
        ("$\\boxed{2}, \\boxed{1}$", "(1, 2)"),
        ("$\\boxed{2}, \\boxed{5}$", "[2, 5)"),  # an interval is not its two ends
        ("$\\boxed{(2, 2), (6, 2)}$ then $\\boxed{(2, 2)}$ again", "(2, 2), (6, 2), (1, 1)"),
    ],
)
def test_several_boxes_that_do_not_form_the_gold_score_zero(completion, gold):
    score = math_reward(completion, gold)
    assert (score, score.reason) == (0.0, "wrong_answer")


@pytest.mark.parametrize(
    "completion, gold, reason",
    [
        ("\\boxed{5} \\boxed{6}", "5", "wrong_answer"),
        ("\\boxed{5} \\boxed{6}", "6", "correct"),
        ("\\boxed{5} or \\boxed{6}", "5", "wrong_answer"),
        ("$\\boxed{4}, \\boxed{5}, \\boxed{6}$", "5", "wrong_answer"),
        ("\\boxed{0.5}, \\boxed{1}", "\\frac{1}{2}", "wrong_answer"),
        ("\\boxed{1}, \\boxed{0.5}", "\\frac{1}{2}", "correct"),
        ("\\boxed{x = 5} or \\boxed{x = 4}", "x = 5", "wrong_answer"),
        ("\\boxed{5}, \\boxed{5 \\text{ or } 6}", "5", "hedged_answer"),
        ("\\boxed{\\mathrm{e}}, \\boxed{\\pi}", "\\mathrm{e}", "wrong_answer"),
    ],
)
def test_single_valued_gold_is_judged_on_the_last_box(completion, gold, reason):
    score = math_reward(completion, gold)
    assert (score, score.reason) == (1.0 if reason == "correct" else 0.0, reason)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("$\\boxed{1}$, $\\boxed{ 2 }$ and \\fbox{$3$}", ["1", "2", "3"]),
        ("\\boxed{\\{1, 2\\}} \\boxed 5.", ["\\{1, 2\\}", "5"]),
        ("\\boxed{\\boxed{1}} \\boxed{2}", ["\\boxed{1}", "2"]),  # a box in a box is content
        ("\\boxed{1} \\boxed{2", []),  # truncated: no final list of boxes
        ("\\boxed{1} \\boxed", []),
        ("<answer>5</answer>", []),
    ],
)
def test_boxed_answers(completion, expected):
    assert boxed_answers(completion) == expected


def test_extract_answer_keeps_the_last_box_of_several():
    completion = "$x = \\boxed{-2}$ and $x = \\boxed{1}$"
    assert extract_answer(completion) == "1"
    assert math_reward(completion, "1") == 1.0


def test_canonical_answer_groups_boxes_taken_together_with_one_box():
    together = ", ".join(boxed_answers("$x = \\boxed{-2}$ and $x = \\boxed{1}$"))
    assert canonical_answer(together) == canonical_answer("1, -2") == canonical_answer("\\{x = 1, x = -2\\}")
    pairs = ", ".join(boxed_answers("\\boxed{(6, 2)} and \\boxed{(2, 2)}"))
    assert canonical_answer(pairs) == canonical_answer("(2, 2), (6, 2)")
    assert canonical_answer("1, 2") != canonical_answer("1, 2, 3")


@pytest.mark.parametrize(
    "completion",
    [
        pytest.param("\\boxed{1}, " * 200_000, id="200k-boxes"),
        pytest.param("\\boxed{1}, \\boxed{10^{10^{10}}}", id="power-tower-in-a-box"),
        pytest.param("\\boxed{" + "(" * 11 + "1" + ")" * 11 + "}, \\boxed{2}", id="too-nested-part"),
        pytest.param("\\boxed{1} " + "\\boxed{" * 200_000, id="box-then-1MB-unclosed"),
        pytest.param("\\boxed{1}, \\boxed{1000000!}", id="slow-part"),
    ],
)
def test_pathological_boxes_against_a_multi_part_gold_return_zero_fast(completion):
    start = time.monotonic()
    score = math_reward(completion, "1, 2", timeout=2.0)
    assert isinstance(score, Score) and score == 0.0, score.reason
    assert time.monotonic() - start < LIMIT


# ------------------------------------------------ \mathrm{e}, Euler's number
@pytest.mark.parametrize(
    "pred, gold, correct",
    [
        ("\\mathrm{e}^2", "e^{2}", True),
        ("e^{2}", "\\mathrm{e}^2", True),
        ("e^2", "\\mathrm{e}^{2}", True),
        ("\\frac{1}{e}", "\\frac{1}{\\mathrm{e}}", True),
        ("2e", "2\\mathrm{e}", True),
        ("2 \\cdot \\mathrm{e}", "2e", True),
        ("\\mathrm e^{x}", "e^x", True),
        ("2.718282", "\\mathrm{e}", True),
        ("\\left(\\mathrm{e}, \\pi\\right)", "(e, \\pi)", True),
        ("2", "2\\mathrm{e}", False),  # math-verify alone drops the e as a unit
        ("e^{3}", "\\mathrm{e}^2", False),
        ("\\mathrm{e}^{2}", "e^{3}", False),
        ("\\pi", "\\mathrm{e}", False),
        ("x^2", "\\mathrm{e}^2", False),  # not read as an unknown symbol
    ],
)
def test_upright_e_is_eulers_number(pred, gold, correct):
    score = math_reward(boxed(pred), gold)
    assert (score, score.reason) == ((1.0, "correct") if correct else (0.0, "wrong_answer"))


@pytest.mark.parametrize("gold", ["\\mathrm{e}", "\\frac{1}{\\mathrm{e}}", "\\sqrt{\\mathrm{e}}", "\\mathrm{e}^{2}-1"])
def test_check_gold_accepts_upright_e(gold):
    assert check_gold(gold) is None


def test_canonical_answer_of_upright_e():
    assert canonical_answer("\\mathrm{e}^2") == canonical_answer("e^{2}") == canonical_answer("\\exp(2)")
    assert canonical_answer("\\frac{1}{\\mathrm{e}}") == canonical_answer("e^{-1}")
    assert canonical_answer("\\mathrm{e}") != canonical_answer("\\pi")


# --------------------------------------------------------------- robustness
LIMIT = 5.0  # math_reward's default timeout


@pytest.mark.parametrize(
    "completion",
    [
        pytest.param(bytes(range(256)).decode("latin-1") * 64, id="binary-junk"),
        pytest.param("\\boxed{" + bytes(range(256)).decode("latin-1") + "}", id="binary-junk-boxed"),
        pytest.param("x" * 1_000_000 + "\\boxed{6}", id="1MB-then-box"),
        pytest.param("\\boxed{" + "1" * 1_000_000 + "}", id="1MB-box"),
        pytest.param("\\boxed{" * 200_000, id="1MB-unclosed-boxes"),
        pytest.param("\\boxed{" + "\\frac{1}{" * 5000 + "2" + "}" * 5001, id="5000-nested-frac"),
        pytest.param("\\boxed{" + "{" * 5000 + "1" + "}" * 5001, id="5000-nested-braces"),
        pytest.param("\\boxed{" + "{(" * 5 + "1" + ")}" * 5 + "}", id="nested-brackets-at-limit"),
        pytest.param("\\boxed{10^{10^{10}}}", id="power-tower"),
        pytest.param("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", id="power-tower-6"),
        pytest.param("<answer>" + "(" * 3000 + "</answer>", id="open-parens"),
        pytest.param("\\boxed{\\begin{pmatrix}" + "1&" * 400 + "1\\end{pmatrix}}", id="wide-matrix"),
    ],
)
def test_pathological_inputs_return_zero_fast(completion):
    start = time.monotonic()
    score = math_reward(completion, "5")
    elapsed = time.monotonic() - start
    assert isinstance(score, Score) and score == 0.0, score.reason
    assert elapsed < LIMIT, (elapsed, score.reason)


def test_overrun_stops_at_the_timeout_off_the_main_thread():
    # 1000000! parses and is compared for about 6 s: the guard must stop it.
    results = []

    def score():
        start = time.monotonic()
        results.append((math_reward(boxed("1000000!"), "5", timeout=1.0), time.monotonic() - start))

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(timeout=10)
    [(result, elapsed)] = results
    assert (result, result.reason) == (0.0, "timeout")
    assert elapsed < 3.5  # the 1 s limit plus killing the helper, on a loaded machine
    assert math_reward(boxed("0.5"), "\\frac{1}{2}") == 1.0  # a fresh helper takes over


def test_works_in_worker_processes():
    completions = [boxed("0.5"), boxed("\\frac{1}{3}"), "no answer", boxed("x = \\frac12")]
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        scores = list(pool.map(math_reward, completions, ["\\frac12"] * 4))
    assert [(float(s), s.reason) for s in scores] == [
        (1.0, "correct"),
        (0.0, "wrong_answer"),
        (0.0, "no_answer_found"),
        (1.0, "correct"),
    ]


def test_scores_pickle_and_behave_as_floats():
    score = math_reward(boxed("\\frac12"), "0.5")
    assert pickle.loads(pickle.dumps(score)).reason == "correct"
    assert score + 1 == 2.0 and json.loads(json.dumps(score)) == 1.0


# ------------------------------------------------------ held-out agreement
HELDOUT = pathlib.Path(__file__).parent / "data" / "math_heldout.jsonl"


def test_heldout_agreement():
    cases = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    assert len(cases) >= 40
    disagreements = []
    for case in cases:
        score = math_reward(case["completion"], case["answer"])
        if (score == 1.0) != case["correct"]:
            disagreements.append((case, score.reason))
    for case, reason in disagreements:
        print(f"DISAGREE expected={case['correct']} got={reason}: answer={case['answer']!r} completion={case['completion'][-80:]!r}")
    agreement = 1 - len(disagreements) / len(cases)
    print(f"held-out agreement: {agreement:.1%} on {len(cases)} cases")
    assert agreement >= 0.95
