"""Build thinkgym's tiny default model and report its cost and accuracy.

    python benchmarks/build_tiny_model.py [--out DIR] [--steps N] [--tasks 200]

Prints the build time, checkpoint size, and accuracy on the first ``--tasks``
held-out tasks (``TINY_ENV`` with ``seed=EVAL_SEED``), one sample each at
temperature 1 and greedy, scored by the environment's accuracy reward
(``math_reward``), with the mean completion length in tokens (EOS included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkgym.trainer.models.tiny import EVAL_SEED, STEPS, build_tiny_model, make_env


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], temperature: float | None, seed: int = 0) -> tuple[list[str], list[int]]:
    """One completion per prompt (greedy when ``temperature`` is None) and its length in tokens."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    options = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    output = model.generate(**batch, max_new_tokens=128, **options)
    completions = output[:, batch["input_ids"].shape[1]:]
    lengths = [int((row != tokenizer.pad_token_id).sum()) for row in completions]
    return tokenizer.batch_decode(completions, skip_special_tokens=True), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to build (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tiny-model-"))

    started = time.perf_counter()
    build_tiny_model(out, steps=args.steps)
    print(f"build time: {time.perf_counter() - started:.1f} s (torch threads: {torch.get_num_threads()})")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"checkpoint: {out} ({size / 1e6:.2f} MB)")

    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    env = make_env(EVAL_SEED)
    tasks = [env.tasks[i] for i in range(args.tasks)]
    prompts = [env.prompt_of(t) for t in tasks]
    for name, temperature in (("temperature 1", 1.0), ("greedy", None)):
        completions, lengths = sample(model, tokenizer, prompts, temperature)
        correct = sum(s.reward for s in env.score_many(completions, tasks, workers=1))
        print(f"{name}: accuracy {correct / len(tasks):.1%} on {len(tasks)} held-out tasks, "
              f"mean completion {sum(lengths) / len(lengths):.1f} tokens")
        print(f"  e.g. {prompts[0]!r} -> {completions[0]!r}")


if __name__ == "__main__":
    main()
