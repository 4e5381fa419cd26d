"""The ``thinkgym`` command line.

Bad input (unknown ids, missing files, malformed rows) ends with a one-line
error and exit code 2; ``--debug`` shows the traceback. The trainer's heavy part
(torch, transformers) is imported only by the commands that use it, after the
checks that do not need it (a ``train`` config, its env ids and options; an
``eval``'s environment id and options), so such a typo is reported in about a
second.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from thinkgym.envs import EnvError, list_envs, make
from thinkgym.envs.tasks import read_jsonl
from thinkgym.trainer.evaluation.options import (
    BATCH_SIZE, EVAL_MAX_NEW_TOKENS, EvalError, EvalOptions, check_options, parse_ks)
from thinkgym.trainer.models.builtin import check_model, model_rows
from thinkgym.trainer.sampling import Sampling, add_sampling_flags, sampling_from_flags
from thinkgym.trainer.typed_config import yaml_problem


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``["size=10", "difficulty={digits: 3}"]`` -> kwargs; values are YAML scalars/maps."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"cannot parse the value of {key}: {yaml_problem(exc)}") from None
    return kwargs


def make_env(env_id: str, args: Sequence[str]):
    try:
        return make(env_id, **parse_assignments(args))
    except TypeError as exc:  # an option the env's constructor does not take
        raise UsageError(f"{env_id}: {exc}") from None


def print_table(rows: list[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [list(map(str, header))] + [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


# -- commands ---------------------------------------------------------------------------
def cmd_envs_list(args: argparse.Namespace) -> None:
    print_table(list(list_envs().items()), ["id", "registered by"])


def cmd_envs_show(args: argparse.Namespace) -> None:
    env = make_env(args.id, args.arg)
    base = env.unwrapped
    obs, info = env.reset(seed=args.seed)
    print(f"{args.id}: {len(base.tasks)} tasks, prompt style {base.style!r}, max_turns {base.max_turns}")
    print(f"\nExample prompt (task {info['task_id']}):")
    if isinstance(obs, str):
        print(obs)
    else:
        for message in obs:
            print(f"[{message['role']}]\n{message['content']}")
    print("\nReward components:")
    print_table([(r.name, function_name(r.fn), r.weight) for r in base.rewards], ["name", "function", "weight"])


def function_name(fn) -> str:
    """``math_reward``, or ``math_reward(extraction='flexible')`` for a partial."""
    if isinstance(fn, functools.partial):
        options = ", ".join(f"{k}={v!r}" for k, v in fn.keywords.items())
        return f"{function_name(fn.func)}({options})"
    return getattr(fn, "__name__", repr(fn))


def read_completions(path: Path) -> list[dict]:
    if not path.is_file():
        raise UsageError(f"completions file not found: {path}")
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("completion"), str) or "task_id" not in row:
            raise UsageError(f"{path}: row {number} needs \"task_id\" and a string \"completion\"")
    if not rows:
        raise UsageError(f"{path}: no completions")
    return rows


def cmd_score(args: argparse.Namespace) -> None:
    env = make_env(args.env, args.arg)
    base = env.unwrapped
    path = Path(args.completions)
    rows = read_completions(path)
    tasks = []
    for number, row in enumerate(rows, 1):
        try:
            tasks.append(base.task_by_id(row["task_id"]))
        except EnvError as exc:
            raise UsageError(f"{path}: row {number}: {exc} in {args.env}") from None
    scored = base.score_many([r["completion"] for r in rows], tasks, workers=args.workers)
    out = Path(args.out) if args.out else path.with_name(path.stem + ".scored.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for row, result in zip(rows, scored):
            f.write(json.dumps({"task_id": row["task_id"], "reward": result.reward, "rewards": result.rewards,
                                "reasons": result.reasons}) + "\n")
    n = len(scored)
    table = [("reward (total)", sum(s.reward for s in scored) / n, sum(s.reward > 0 for s in scored) / n)]
    for r in base.rewards:
        values = [s.rewards[r.name] for s in scored]
        table.append((f"{r.name} (x{r.weight:g})", sum(values) / n, sum(v > 0 for v in values) / n))
    print(f"Scored {n} completions of {args.env}\n")
    print_table(table, ["component", "mean", "fraction > 0"])
    first = base.rewards[0].name
    reasons = collections.Counter(s.reasons[first] for s in scored)
    print(f"\nReasons ({first}):")
    print_table(reasons.most_common(10), ["reason", "count"])
    print(f"\nPer-row rewards and reasons: {out}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train; with ``--nproc N`` relaunch under torchrun, except for a dry run,
    which prints the plan (for N processes) and exits without launching any."""
    if args.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
    from thinkgym.trainer.config import load_config
    from thinkgym.trainer.plan import check_run, describe_plan

    config = load_config(args.config, args.set)
    check_run(config, processes=args.nproc)
    if args.dry_run:
        print(describe_plan(config, processes=args.nproc))
        return
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # relaunch under torchrun
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc),
                   "--standalone", "-m", "thinkgym", *(["--debug"] if args.debug else []), "train",
                   *(["--config", args.config] if args.config else []), *[f"--set={s}" for s in args.set],
                   *(["--resume"] if args.resume else [])]
        raise SystemExit(subprocess.run(command).returncode)
    from thinkgym.trainer.run import train

    train(config, resume=args.resume)


def cmd_eval(args: argparse.Namespace) -> None:
    env = make_env(args.env, args.arg)
    try:  # every option is checked before torch is imported
        options = EvalOptions(
            model=args.model, env=args.env, env_args=parse_assignments(args.arg), n=args.n, ks=parse_ks(args.k),
            sampling=sampling_from_flags(args),
            limit=args.limit, seed=args.seed, device=args.device, dtype=args.dtype,
            workers=args.workers, batch_size=args.batch_size, threads=args.threads)
        check_options(options)
        check_model(options.model)
        from thinkgym.trainer.evaluation.evaluate import default_out_dir, evaluate_model, summary_rows
        from thinkgym.trainer.run import resolve_device

        options.device = resolve_device(options.device)
        out = Path(args.out) if args.out else default_out_dir(args.env)
        summary = evaluate_model(options, env, out, log=lambda line: print(line, file=sys.stderr))
    except EvalError as exc:
        raise UsageError(str(exc)) from None
    print(f"{summary['model']} on {args.env}: {summary['tasks']} tasks x {summary['n']} samples "
          f"in {summary['wall_s']:.1f} s\n")
    print_table(summary_rows(summary), ["metric", "value"])
    print(f"\nSamples and summary: {out}")


def cmd_models_list(args: argparse.Namespace) -> None:
    print("Built-in models: give the name as --model or model.path (a checkpoint folder or a hub name works too).")
    for name, about, source, state in model_rows():
        print(f"\n{name}\n  {about}\n  from:  {source}\n  state: {state}")


def cmd_sandbox_info(args: argparse.Namespace) -> None:
    from thinkgym.rewards.sandbox import isolation_info
    info = isolation_info()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")


# -- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinkgym", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    envs = commands.add_parser("envs", help="list and inspect environments").add_subparsers(dest="envs_command", required=True)
    envs.add_parser("list", help="registered environment ids").set_defaults(run=cmd_envs_list)
    show = envs.add_parser("show", help="an example prompt and the reward components")
    show.add_argument("id")
    show.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE", help="env option (repeatable)")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(run=cmd_envs_show)

    score = commands.add_parser("score", help="score completions offline")
    score.add_argument("--env", required=True, help="environment id")
    score.add_argument("--completions", required=True, help='JSONL rows {"task_id": ..., "completion": ...}')
    score.add_argument("--out", help="per-row results (default: <completions>.scored.jsonl)")
    score.add_argument("--workers", type=int, default=None, help="scoring processes (default: one per core)")
    score.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE", help="env option (repeatable)")
    score.set_defaults(run=cmd_score)

    train = commands.add_parser("train", help="train a model with GRPO-family RL (default: the tiny built-in run)")
    train.add_argument("--config", help="YAML config (default: built-in defaults, i.e. configs/tiny.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.lr=1e-5")
    train.add_argument("--resume", action="store_true", help="continue the run in output.dir from its checkpoint")
    train.add_argument("--dry-run", action="store_true", help="validate the config, print the plan and exit (any --nproc)")
    train.add_argument("--nproc", type=int, default=1, help="data-parallel processes on this machine (runs torchrun)")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="pass@k, maj@k and rewards of a model on an environment")
    evaluate.add_argument("--model", required=True, help="checkpoint folder, hub name, or a built-in name ('thinkgym models list')")
    evaluate.add_argument("--env", required=True, help="environment id")
    evaluate.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE", help="env option (repeatable)")
    evaluate.add_argument("--n", type=int, default=16, help="completions per task (default: 16)")
    evaluate.add_argument("--k", default="1,4,16", help="comma-separated k values, each <= n (default: 1,4,16)")
    evaluate.add_argument("--limit", type=int, help="the first LIMIT tasks (default: all of a dataset, 100 of a generator)")
    add_sampling_flags(evaluate, Sampling(max_new_tokens=EVAL_MAX_NEW_TOKENS))
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed (the task generator's seed is --arg seed=N)")
    evaluate.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    evaluate.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    evaluate.add_argument("--workers", type=int, default=None, help="scoring processes (default: one per core)")
    evaluate.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                          help="sequences generated at once (default: %(default)s); bounds memory, paces the progress bar")
    evaluate.add_argument("--threads", type=int, default=1,
                          help="torch CPU threads, as train.cpu_threads (default: 1, fastest for small models "
                               "on a few cores; 0: torch's default)")
    evaluate.add_argument("--out", help="output folder (default: runs/eval-<env name>-<timestamp>)")
    evaluate.set_defaults(run=cmd_eval)

    models = commands.add_parser("models", help="the built-in models").add_subparsers(dest="models_command", required=True)
    models.add_parser("list", help="built-in model names, what each is, where it comes from").set_defaults(
        run=cmd_models_list)

    sandbox = commands.add_parser("sandbox", help="the code sandbox").add_subparsers(dest="sandbox_command", required=True)
    sandbox.add_parser("info", help="which isolation is active").set_defaults(run=cmd_sandbox_info)
    return parser


TRAINER_ERRORS = (("thinkgym.trainer.typed_config", "ConfigError"), ("thinkgym.trainer.checkpoint", "CheckpointError"),
                  ("thinkgym.trainer.models.builtin", "ModelLoadError"))
"""(module, class) of the trainer's bad-input exceptions."""


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input, not a bug: one line, exit code 2. A
    trainer exception is looked up only when its module is loaded (code that
    never imported it cannot have raised it), so reporting a typo never
    imports the trainer and torch."""
    loaded = [getattr(sys.modules[module], name) for module, name in TRAINER_ERRORS if module in sys.modules]
    return UsageError, EnvError, *loaded


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except user_errors() as exc:
        if args.debug:
            raise
        print(f"thinkgym: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
