"""Write the datasets of the offline recipes (configs/sft_tiny.yaml,
reward_model_tiny.yaml, dpo_offline_tiny.yaml) from a teacher's samples.

The teacher, a stronger checkpoint of the tiny model (for the shipped files: the
tiny model after 100 steps of Dr. GRPO, ``thinkgym train --set train.steps=100``),
samples ``--n`` completions of each of ``--tasks`` two-digit arithmetic tasks at
temperature 1, and the environment scores them. Then:

- ``tiny_sft.jsonl``: one correct completion per task (prompt + completion):
  distillation data, the teacher's traces filtered by the reward;
- ``tiny_preferences.jsonl``: per task with a correct and a wrong completion,
  ``chosen`` the correct one, ``rejected`` the wrong one;
- ``tiny_preferences_eval.jsonl``: the same from other tasks, held out.

Tasks come from generator seeds of their own and never repeat a held-out
question of the tiny model (the first 1000 of seed 0), so the trainer's held-out
accuracy stays on unseen questions.

Usage:  python scripts/make_tiny_datasets.py --teacher runs/teacher/checkpoint [--out data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from thinkgym.trainer.engines import make_engine
from thinkgym.trainer.evaluation.samples import sample_and_score
from thinkgym.trainer.models.builtin import resolve_model
from thinkgym.trainer.models.policy import load_model
from thinkgym.trainer.models.tiny import held_out_questions, make_env
from thinkgym.trainer.sampling import Sampling

TRAIN_SEED, EVAL_SEED = 3, 4  # generator seeds: the pretraining (1) and held-out (0) ones stay apart


def sample(engine, seed: int, count: int, n: int, skip: set[str]) -> list[tuple[str, list[tuple[str, bool]]]]:
    """``(prompt, [(completion, correct)] * n)`` for ``count`` tasks of generator ``seed``."""
    env = make_env(seed)
    base = env.unwrapped
    tasks = [t for t in (base.tasks[i] for i in range(count + len(skip))) if t["question"] not in skip][:count]
    samples = sample_and_score(engine, env, tasks, n, Sampling(), desc=f"seed {seed}")
    correct = samples.correct(base)
    return [(base.prompt_of(task), [(samples.texts[i * n + k], correct[i * n + k]) for k in range(n)])
            for i, task in enumerate(tasks)]


def demonstrations(groups) -> list[dict]:
    return [{"prompt": prompt, "completion": next(text for text, ok in group if ok)}
            for prompt, group in groups if any(ok for _, ok in group)]


def preferences(groups) -> list[dict]:
    rows = []
    for prompt, group in groups:
        right = [text for text, ok in group if ok]
        wrong = [text for text, ok in group if not ok and text not in right]
        if right and wrong:
            rows.append({"prompt": prompt, "chosen": right[0], "rejected": wrong[0]})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} rows")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="checkpoint folder (or built-in name) that samples")
    parser.add_argument("--tasks", type=int, default=1000, help="training tasks (default: 1000)")
    parser.add_argument("--eval-tasks", type=int, default=400, help="tasks of the held-out pairs (default: 400)")
    parser.add_argument("--n", type=int, default=4, help="samples per task (default: 4)")
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model(resolve_model(args.teacher))
    engine = make_engine("auto", model.eval(), tokenizer)
    skip = held_out_questions()
    train = sample(engine, TRAIN_SEED, args.tasks, args.n, skip)
    held_out = sample(engine, EVAL_SEED, args.eval_tasks, args.n, skip | {p for p, _ in train})
    out = Path(args.out)
    write(out / "tiny_sft.jsonl", demonstrations(train))
    write(out / "tiny_preferences.jsonl", preferences(train))
    write(out / "tiny_preferences_eval.jsonl", preferences(held_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
