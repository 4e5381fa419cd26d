"""Throughput of math_reward on a realistic mix, and the cost of its timeout guard.

Run: python benchmarks/bench_math_reward.py [--rounds 5] [--seconds 1]

Prints math_reward calls per second in one process on short ``\\boxed{}``
completions (about 40% correct, 40% wrong, 20% without an answer; integer and
LaTeX gold answers), then, for the completions that need math-verify, the time
per call through ``call_with_timeout`` divided by the time of the same check
(``_judge``: math-verify parse + verify) called directly in this process.
Ends with a markdown row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from thinkgym.rewards.math_answer import _judge, extract_answer, math_reward

# (gold, correct answer, wrong answer): typical GSM8K / MATH gold answers.
PROBLEMS = [
    ("72", "72", "68"),
    ("1,234", "1234", "1243"),
    ("\\frac{1}{2}", "0.5", "\\frac{1}{3}"),
    ("\\frac{\\pi}{2}", "\\pi/2", "\\pi"),
    ("2\\sqrt{2}", "\\sqrt{8}", "2\\sqrt{3}"),
    ("(-\\infty, 3]", "(-\\infty, 3]", "(-\\infty, 3)"),
    ("\\{1, 2\\}", "\\{2, 1\\}", "\\{1, 3\\}"),
    ("C", "(C)", "D"),
    ("30^\\circ", "30", "45"),
    ("x^2+2x+1", "(x+1)^2", "(x-1)^2"),
]


def completion(answer: str | None) -> str:
    reasoning = "<think>First compute the sum, then divide by the count and simplify.</think>\n"
    if answer is None:
        return reasoning + "I am not sure how to finish this problem."
    return reasoning + f"Therefore the final answer is $\\boxed{{{answer}}}$."


def workload() -> list[tuple[str, str]]:
    """(completion, gold) pairs: per problem 2 correct, 2 wrong, 1 without an answer."""
    pairs = []
    for gold, right, wrong in PROBLEMS:
        pairs += [(completion(right), gold)] * 2 + [(completion(wrong), gold)] * 2 + [(completion(None), gold)]
    return pairs


def rate(fn, pairs: list, seconds: float) -> float:
    """Calls per second of ``fn(*pair)`` cycling over ``pairs`` for about ``seconds``."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for pair in pairs:
            fn(*pair)
        calls += len(pairs)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is kept")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement per round")
    args = parser.parse_args()

    pairs = workload()
    for pair in pairs:  # start the helper and fill both processes' gold caches
        math_reward(*pair)
        if extract_answer(pair[0]) is not None:
            _judge(pair[1], extract_answer(pair[0]))

    # The guard only wraps completions that reach math-verify: an answer, and not two integers.
    checked = [(c, g) for c, g in pairs if extract_answer(c) is not None and not g.isdigit()]
    judged = [(g, extract_answer(c)) for c, g in checked]
    # Interleaved rounds, best of each: on a shared machine, load from other
    # processes only ever slows a round down.
    mix_rate = guarded_rate = direct_rate = 0.0
    for _ in range(args.rounds):
        mix_rate = max(mix_rate, rate(math_reward, pairs, args.seconds))
        guarded_rate = max(guarded_rate, rate(math_reward, checked, args.seconds))
        direct_rate = max(direct_rate, rate(_judge, judged, args.seconds))
    ratio = direct_rate / guarded_rate

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"mix: {len(pairs)} completions (40% correct, 40% wrong, 20% no answer), {machine}")
    print(f"math_reward:                    {mix_rate:10.0f} calls/s")
    print(f"math-verify check, guarded:     {guarded_rate:10.0f} calls/s")
    print(f"math-verify check, in-process:  {direct_rate:10.0f} calls/s")
    print(f"guard overhead: {ratio:.2f}x the in-process time "
          f"({1e6 / guarded_rate - 1e6 / direct_rate:.0f} us per guarded call)")
    print()
    print("| benchmark | workload | calls/s | guarded / in-process time | machine |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| math_reward | 50 short boxed completions, 40/40/20 correct/wrong/none | {mix_rate:.0f} | {ratio:.2f}x | {machine} |")


if __name__ == "__main__":
    main()
