"""What ``thinkgym eval`` is asked for, checked before torch is imported (so a
typo is reported at once): the options, their defaults and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from thinkgym.trainer.sampling import Sampling

BATCH_SIZE = 32
"""Sequences generated at once by eval and the held-out eval: bounds memory, paces the progress bar."""

ENGINE_NAMES = ("auto", "hf", "static")
"""``--engine`` / ``sampling.engine`` values (trainer/rollout.py's engines and ``auto``)."""


class EvalError(ValueError):
    """A bad evaluation option; the CLI prints it as one line with exit code 2."""


@dataclass
class EvalOptions:
    """What ``thinkgym eval`` was asked for. ``model`` is a checkpoint folder, a
    hub name, or a built-in name (:data:`~thinkgym.trainer.models.BUILTIN_MODELS`)."""

    model: str
    env: str
    env_args: dict = field(default_factory=dict)
    n: int = 16
    ks: tuple[int, ...] = (1, 4, 16)
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=256))
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    workers: int | None = None  # scoring processes (None: one per core)
    engine: str = "auto"  # rollout engine (trainer/rollout.py)
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
    sampling = options.sampling
    problems = [(options.n < 1, f"--n must be >= 1, got {options.n}"),
                (options.limit is not None and options.limit < 1, f"--limit must be >= 1, got {options.limit}"),
                (sampling.temperature <= 0, f"--temperature must be > 0, got {sampling.temperature}"),
                (not 0 < sampling.top_p <= 1, f"--top-p must be in (0, 1], got {sampling.top_p}"),
                (sampling.max_new_tokens < 1, f"--max-new-tokens must be >= 1, got {sampling.max_new_tokens}"),
                (options.workers is not None and options.workers < 1, f"--workers must be >= 1, got {options.workers}"),
                (options.batch_size < 1, f"--batch-size must be >= 1, got {options.batch_size}"),
                (options.threads < 0, f"--threads must be >= 0 (0: torch's default), got {options.threads}"),
                (options.engine not in ENGINE_NAMES, f"--engine must be one of {', '.join(ENGINE_NAMES)}; "
                                                     f"got {options.engine!r}")]
    problems += [(not 1 <= k <= options.n, f"k={k} is out of range: each k must be between 1 and --n ({options.n})")
                 for k in options.ks]
    for failed, message in problems:
        if failed:
            raise EvalError(message)
