"""What ``thinkgym eval`` is asked for, checked before torch is imported (so a
typo is reported at once): the options, their defaults and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from thinkgym.trainer.sampling import Sampling, sampling_problems

BATCH_SIZE = 32
"""Sequences generated at once by eval and the held-out eval: bounds memory, paces the progress bar."""

EVAL_MAX_NEW_TOKENS = 256
"""Eval's default ``--max-new-tokens``: room for a worked answer (training's default is 64)."""


class EvalError(ValueError):
    """A bad evaluation option; the CLI prints it as one line with exit code 2."""


@dataclass
class EvalOptions:
    """What ``thinkgym eval`` was asked for. ``model`` is a checkpoint folder, a
    hub name, or a built-in name (:data:`~thinkgym.trainer.models.builtin.BUILTIN_MODELS`)."""

    model: str
    env: str
    env_args: dict = field(default_factory=dict)
    n: int = 16
    ks: tuple[int, ...] = (1, 4, 16)
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=EVAL_MAX_NEW_TOKENS))
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    workers: int | None = None  # scoring processes (None: one per core)
    batch_size: int = BATCH_SIZE  # sequences generated at once
    threads: int = 1  # torch intra-op threads, as train.cpu_threads (0: torch's default)


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``, sorted and deduplicated."""
    try:
        return tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise EvalError(f"--k takes comma-separated integers like 1,4,16, got {text!r}") from None


def check_options(options: EvalOptions) -> None:
    """Reject options that cannot work, before any model is loaded."""
    problems = [(options.n < 1, f"--n must be >= 1, got {options.n}"),
                (options.limit is not None and options.limit < 1, f"--limit must be >= 1, got {options.limit}"),
                (options.workers is not None and options.workers < 1, f"--workers must be >= 1, got {options.workers}"),
                (options.batch_size < 1, f"--batch-size must be >= 1, got {options.batch_size}"),
                (options.threads < 0, f"--threads must be >= 0 (0: torch's default), got {options.threads}")]
    problems += [(True, problem) for problem in sampling_problems(options.sampling, key=_flag)]
    problems += [(not 1 <= k <= options.n, f"k={k} is out of range: each k must be between 1 and --n ({options.n})")
                 for k in options.ks]
    for failed, message in problems:
        if failed:
            raise EvalError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
