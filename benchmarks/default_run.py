"""Acceptance run of the embedded default: `thinkgym train` with no arguments.

Times the whole job from a cold cache (building the tiny model included) on this
machine and checks the issue's targets: at most 10 minutes on 2 CPU cores, and
held-out accuracy up by at least 20 points.

Usage:  python benchmarks/default_run.py [--warm-cache] [--out DIR]
Prints the figures and a markdown row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-cache", action="store_true", help="reuse the cached tiny model (skip the build)")
    parser.add_argument("--out", default=None, help="run directory (default: a fresh temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="thinkgym-default-")) / "run"
    env = dict(os.environ)
    if not args.warm_cache:
        env["THINKGYM_CACHE"] = tempfile.mkdtemp(prefix="thinkgym-cache-")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "thinkgym", "train", "--set", f"output.dir={out}"], env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        print(f"thinkgym train failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    summary = json.loads((out / "summary.json").read_text())
    before = sum(summary["before"].values()) / len(summary["before"])
    after = sum(summary["after"].values()) / len(summary["after"])
    gain = 100 * (after - before)
    ok_time, ok_gain = wall <= 600, gain >= 20
    print(f"\nwall time {wall:.0f} s ({'cold' if not args.warm_cache else 'warm'} cache): {'ok' if ok_time else 'OVER'} the 600 s target")
    print(f"held-out accuracy {100 * before:.1f}% -> {100 * after:.1f}% ({gain:+.1f} points): "
          f"{'ok' if ok_gain else 'BELOW'} the +20 target")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n| default run | {'cold' if not args.warm_cache else 'warm'} cache | {wall:.0f} s | "
          f"{100 * before:.1f}% | {100 * after:.1f}% | {gain:+.1f} | {machine} |")
    return 0 if ok_time and ok_gain else 1


if __name__ == "__main__":
    sys.exit(main())
