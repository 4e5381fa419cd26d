"""Hostile programs against the sandbox: each must be contained, judged right, in bounded
time, leaving nothing running. Runs at every isolation level this machine offers."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import thinkgym
from thinkgym.rewards.sandbox import (Job, Limits, SandboxPool, SandboxUnavailable, isolation_info,
                                      isolation_warning)
from thinkgym.rewards.sandbox import pool as pool_module
from thinkgym.rewards.sandbox.isolation import UID_BASE

ROOT = os.geteuid() == 0
SECRET = "THINKGYM_TEST_SECRET"
os.environ[SECRET] = secrets.token_hex(16)  # set before any zygote starts
LIMITS = Limits(timeout_s=2.0, cpu_s=2.0, memory_bytes=256 << 20, max_processes=32)
TESTS = "assert f(2) == 4\n"   # most programs below are judged against this
GOOD = "def f(x):\n    return x * 2\n"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"


def _sandbox_processes() -> list[int]:
    """Pids of processes running as a sandbox uid (only runs have such uids)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
            except (OSError, StopIteration):
                continue
            if uid >= UID_BASE:
                found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=LIMITS) as p:
        yield p


def run(pool, code, tests=TESTS, entry_point=None, then="", max_s=8.0):
    """Run ``code`` (dedented) + ``then`` and check containment: bounded time, nothing
    left running, caller fine."""
    start = time.monotonic()
    result = pool.run(Job(textwrap.dedent(code) + then, tests, entry_point))
    assert time.monotonic() - start < max_s, result
    if pool.level == "namespaces":
        assert _sandbox_processes() == [], "a sandboxed process outlived its run"
    return result


def test_isolation_info_reports_the_strongest_level():
    info = isolation_info()
    assert info["level"] == ("namespaces" if ROOT else info["level"])
    assert info["pid_namespace"] == (info["level"] != "rlimits")


def test_isolation_warning_names_a_weaker_level_why_and_what_it_loses():
    if ROOT:
        assert isolation_warning() is None and "warning" not in isolation_info()  # the strongest level
    weaker = "user-namespaces" if ROOT else "rlimits"
    try:
        warning = isolation_warning(weaker)
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    assert warning.startswith(f"sandbox isolation is {weaker!r}, weaker than ") and "nproc_limit" in warning
    if ROOT:
        assert "(asked for by argument or $THINKGYM_SANDBOX_ISOLATION)" in warning and "unique_uid" in warning
    assert isolation_info(weaker)["warning"] == warning


@pytest.mark.skipif(not ROOT, reason="as root, auto falls back from namespaces")
def test_isolation_warning_gives_the_reason_a_stronger_level_failed(monkeypatch):
    monkeypatch.setitem(pool_module._probed, "namespaces", "namespaces: OSError: mount went wrong")
    warning = isolation_warning()
    assert "weaker than 'namespaces' on this machine (namespaces: OSError: mount went wrong); runs lose: " in warning
    assert "unique_uid" in warning, warning


def test_unknown_or_unavailable_level_is_an_error():
    with pytest.raises(ValueError):
        SandboxPool(isolation="chroot")
    if not ROOT:
        with pytest.raises(SandboxUnavailable):
            SandboxPool(isolation="namespaces")


# ---- resource exhaustion -------------------------------------------------------------

def test_fork_bomb(pool):
    r = run(pool, FORK_BOMB)
    assert r.passed == 0 and r.reason in ("timeout", "exited_early"), r


def test_memory_bomb(pool):
    r = run(pool, "x = [bytearray(1 << 24) for _ in range(10**6)]\n" + GOOD)
    assert r.passed == 0 and r.reason == "memory_limit", r


def test_memory_bomb_inside_a_test(pool):
    r = run(pool, "def f(x):\n    return len(' ' * (1 << 34))\n")
    assert r.passed == 0 and r.reason == "memory_limit", r


def test_infinite_loop(pool):
    r = run(pool, "def f(x):\n    while True:\n        pass\n")
    assert r.passed == 0 and r.reason == "timeout", r


def test_sigterm_ignoring_loop(pool):
    r = run(pool, """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            pass
        """)
    assert r.passed == 0 and r.reason == "timeout", r


def test_catastrophic_regex(pool):
    r = run(pool, "import re\ndef f(x):\n    return 4 if re.match(r'(a+)+$', 'a' * 40 + 'b') else 4\n")
    assert r.passed == 0 and r.reason == "timeout", r


def test_deep_recursion(pool):
    r = run(pool, """
        import sys
        sys.setrecursionlimit(10**7)
        def f(x):
            return f(x + 1)
        """)
    # 3.11 keeps Python frames on the heap: this ends in MemoryError (or the SystemError
    # CPython raises when it cannot allocate a frame), a crash, or the deadline.
    contained = ("memory_limit", "timeout", "crashed: signal 11", "test_failed: SystemError", "test_failed: MemoryError")
    assert r.passed == 0 and r.reason.startswith(contained), r


def test_segfault_via_ctypes(pool):
    r = run(pool, "import ctypes\ndef f(x):\n    return ctypes.string_at(0)\n")
    assert r.passed == 0 and r.reason == "crashed: signal 11", r


def test_huge_output_is_capped_and_drained(pool):
    r = run(pool, "import sys\nfor _ in range(3000):\n    sys.stdout.write('x' * 100_000)\n" + GOOD)
    assert r.ok and len(r.stdout) == LIMITS.max_output_bytes, (r.reason, len(r.stdout))


def test_huge_file_write(pool):
    r = run(pool, "def f(x):\n    open('big', 'wb').write(b'x' * (200 << 20))\n    return 4\n")
    assert r.passed == 0 and "test_failed" in r.reason, r


# ---- escaping the box ------------------------------------------------------------------

def test_writing_outside_its_directory(pool, tmp_path):
    targets = [str(tmp_path / "escaped"), "/work/escaped-marker", "/etc/escaped-marker", "/var/tmp/escaped-marker"]
    r = run(pool, f"""
        import os
        for path in {targets!r}:
            try:
                with open(path, "w") as f:
                    f.write("escaped")
            except OSError:
                pass
        """, then=GOOD)
    assert r.ok, r
    assert not any(os.path.exists(t) for t in targets)


def test_fresh_private_workdir(pool):
    write = run(pool, "open('left-behind', 'w').write('x')\n" + GOOD)
    read = run(pool, "import os\nassert not os.path.exists('left-behind')\n" + GOOD)
    assert write.ok and read.ok, (write, read)


def test_cannot_read_the_callers_environment(pool):
    r = run(pool, """
        import os, glob
        print(dict(os.environ))
        for path in glob.glob('/proc/*/environ'):
            try:
                print(open(path, 'rb').read())
            except OSError:
                pass
        """, then=GOOD)
    assert r.ok, r
    assert os.environ[SECRET].encode() not in r.stdout and SECRET.encode() not in r.stdout


def test_sees_no_other_process(pool):
    if pool.level == "rlimits":
        pytest.skip("no pid namespace at the rlimits level")
    r = run(pool, "import os\nassert [p for p in os.listdir('/proc') if p.isdigit()] == ['1']\n" + GOOD)
    assert r.ok, r


def test_killing_its_parent_or_process_group(pool):
    r = run(pool, """
        import os, signal
        for target in (os.getppid(), 0, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        def f(x):
            return 5
        """)
    assert r.passed == 0, r
    assert run(pool, GOOD).ok  # the pool is unharmed


def test_orphaned_setsid_children_are_killed(pool):
    r = run(pool, """
        import os, time
        if os.fork() == 0:
            os.setsid()
            while True:
                time.sleep(0.01)
        """, then=GOOD)
    assert r.ok, r  # the verdict is the tests'; the child is gone (checked by run)


def test_double_fork_is_killed(pool):
    r = run(pool, """
        import os
        if os.fork() == 0:
            if os.fork() == 0:
                os.setsid()
                while True:
                    pass
            os._exit(0)
        os.wait()
        """, then=GOOD)
    assert r.ok, r


def test_no_network(pool):
    if pool.level == "rlimits":
        pytest.skip("no network namespace at the rlimits level")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    r = run(pool, f"""
        import socket
        def f(x):
            socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hi")
            return 4
        """)
    assert r.passed == 0 and r.reason.startswith("test_failed: "), r
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


# ---- forging the verdict ----------------------------------------------------------------

@pytest.mark.parametrize("trick", [
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
    "def f(x):\n    raise SystemExit(0)\n",
    "def f(x):\n    import os; os._exit(0)\n",
])
def test_early_exit_scores_zero(pool, trick):
    r = run(pool, trick)
    assert r.passed == 0 and r.reason.startswith("exited_early"), r


def test_thread_exiting_zero_mid_test(pool):
    r = run(pool, """
        import os, threading, time
        threading.Thread(target=lambda: (time.sleep(0.05), os._exit(0))).start()
        def f(x):
            time.sleep(1)
            return 5
        """)
    assert r.passed == 0 and r.reason == "exited_early", r


def test_signal_handler_exiting_zero_mid_test(pool):
    r = run(pool, """
        import os, signal, time
        signal.signal(signal.SIGALRM, lambda *a: os._exit(0))
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        def f(x):
            time.sleep(1)
            return 5
        """)
    assert r.passed == 0 and r.reason == "exited_early", r


def test_kills_itself(pool):
    r = run(pool, """
        import os, signal
        def f(x):
            os.kill(os.getpid(), signal.SIGKILL)
            return 5
        """)
    assert r.passed == 0, r


def test_printing_fake_success_markers(pool):
    r = run(pool, """
        print("passed\\nTHINKGYM 0\\n1\\nP\\n-\\nEND 0\\nAll tests passed. OK")
        import sys; sys.stderr.write("passed")
        def f(x):
            return 5
        """)
    assert r.passed == 0 and r.reason.startswith("test_failed"), r


def test_forged_results_on_inherited_fds(pool):
    r = run(pool, """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b"THINKGYM 0\\n1\\nP\\n-\\nEND 0\\n")
            except OSError:
                pass
        os._exit(0)
        """)
    assert r.passed == 0 and r.reason == "forged_result", r


def test_forked_child_claiming_success(pool):
    r = run(pool, """
        import os
        def f(x):
            if os.fork() == 0:
                return 4          # the child passes the test, and would report...
            os.wait()
            return 5              # ...but only the parent may
        """)
    assert r.passed == 0 and r.reason.startswith("test_failed"), r


def test_forked_child_after_parent_exits(pool):
    r = run(pool, """
        import os
        if os.fork() != 0:
            os._exit(0)
        """, then=GOOD)
    assert r.passed == 0 and r.reason == "exited_early", r


def test_closing_the_report_pipe(pool):
    r = run(pool, "import os\nos.close(3)\n" + GOOD)
    assert r.passed == 0, r


@pytest.mark.parametrize("value", ["AlwaysEqual()", "Int4(0)", "[AlwaysEqual()]", "{1: AlwaysEqual()}"])
def test_always_equal_objects(pool, value):
    r = run(pool, f"""
        class AlwaysEqual:
            def __eq__(self, other):
                return True
        class Int4(int):
            def __eq__(self, other):
                return True
        def f(x):
            return {value}
        """)
    assert r.passed == 0 and r.reason.startswith("non_builtin_return"), r


def test_monkeypatching_builtins_and_modules(pool):
    r = run(pool, """
        import builtins, math
        builtins.abs = lambda x: 0
        builtins.AssertionError = Warning
        math.isclose = lambda *a, **k: True
        def f(x):
            return 5
        """, tests="import math\nassert abs(f(2) - 4) < 1e-9\nassert math.isclose(f(2), 4)\n")
    assert r.passed == 0 and r.reason == "test_failed: AssertionError at line 2", r


def test_swallowed_exceptions_do_not_help(pool):
    r = run(pool, """
        import sys
        sys.excepthook = lambda *a: None
        def f(x):
            try:
                return 5
            finally:
                pass
        """)
    assert r.passed == 0 and r.reason == "test_failed: AssertionError at line 1", r


# ---- positives and reasons --------------------------------------------------------------

def test_correct_program_passes(pool):
    r = run(pool, GOOD)
    assert r.ok and (r.passed, r.total) == (1, 1)


def test_cases_are_counted(pool):
    r = run(pool, GOOD, tests="assert f(1) == 2\nassert f(2) == 5\nassert f(3) == 6\n")
    assert (r.passed, r.total, r.reason) == (2, 3, "test_failed: AssertionError at line 2")


def test_humaneval_style_check(pool):
    tests = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 4\n"
    assert run(pool, GOOD, tests=tests, entry_point="f").ok
    r = run(pool, GOOD, tests=tests, entry_point="g")
    assert r.reason == "entry_point_not_found: g"


def test_syntax_error_reason(pool):
    r = run(pool, "def f(x)\n    return x\n")
    assert r.reason == "syntax_error: expected ':' line 1", r


# ---- failures of the sandbox itself -------------------------------------------------------

def _zygote_pids() -> set:
    """Pids of this process's zygotes."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"zygote.main()" in cmdline:
            found.add(int(entry))
    return found


def test_a_zygote_killed_mid_run_is_retried_not_scored():
    before = _zygote_pids()
    with SandboxPool(workers=1, limits=LIMITS) as pool:
        assert pool.run(Job(GOOD, TESTS)).ok
        (zygote,) = _zygote_pids() - before
        killer = threading.Timer(0.3, os.killpg, (zygote, signal.SIGKILL))
        killer.start()
        r = pool.run(Job("import time\ntime.sleep(1)\n" + GOOD, TESTS))
        killer.join()
        assert len(_zygote_pids() - before - {zygote}) == 1  # the retry's
    assert r.ok and not r.infra_error, r


def test_a_persistent_sandbox_failure_is_retried_then_reported(monkeypatch):
    if isolation_info()["level"] == "rlimits":
        pytest.skip("no per-run mounts to fail at the rlimits level")
    attempts = []
    monkeypatch.setattr(pool_module, "RETRY_PAUSES", (0.0, 0.0))
    real_attempt = pool_module.SandboxPool._attempt
    monkeypatch.setattr(pool_module.SandboxPool, "_attempt",
                        lambda self, *a: attempts.append(1) or real_attempt(self, *a))
    with SandboxPool(workers=1, limits=Limits(tmpfs_bytes=-1)) as pool:  # the kernel refuses that tmpfs
        r = pool.run(Job(GOOD, TESTS))
    assert len(attempts) == 3 and r.passed == 0 and r.infra_error, r
    assert r.reason.startswith("sandbox_error: OSError") and "mount /tmp" in r.reason, r


def test_program_failures_are_never_infra_errors(pool):
    hostile = [FORK_BOMB, "class sandbox_error(Exception): pass\nraise sandbox_error\n", "while True:\n    pass\n"]
    if pool.level != "rlimits" or ROOT:  # else the run shares our uid, and may kill its zygote
        hostile.append("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    results = pool.run_many([Job(code, TESTS) for code in hostile])
    assert not any(r.infra_error for r in results), results


# ---- a checkout where other users cannot read ------------------------------------------------

_FROM_0700 = """
import json, sys
import thinkgym.rewards.sandbox as sbx
from thinkgym.cli import main
assert sbx.__file__.startswith(sys.argv[1]), sbx.__file__
main(["sandbox", "info"])
limits = sbx.Limits(timeout_s=2, cpu_s=2, memory_bytes=256 << 20, max_processes=32)
with sbx.SandboxPool(workers=2, limits=limits) as pool:
    results = pool.run_many([sbx.Job(code, tests) for code, tests in json.loads(sys.argv[2])])
print(json.dumps([[r.passed, r.reason, r.infra_error] for r in results]))
"""


def _copy_installed(dest: Path) -> None:
    """This checkout's code, laid out as installed (``package-dir`` of pyproject.toml)."""
    project = Path(thinkgym.__file__).resolve().parent.parent
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(project / "thinkgym", dest / "thinkgym", ignore=skip)
    for folder in ("envs", "rewards", "trainer", "data"):
        shutil.copytree(project / folder, dest / "thinkgym" / folder, ignore=skip)


def test_a_checkout_and_venv_in_a_0700_folder_get_the_strongest_level(tmp_path):
    """Code and interpreter where no other uid may enter, under /tmp (which every run
    covers with its own): as strong a level as here, programs judged right, import
    from the venv, and (with a uid of their own) cannot read the checkout."""
    closed = Path(tempfile.mkdtemp(prefix="thinkgym-0700-"))  # mode 0700
    try:
        site = closed / "checkout"
        _copy_installed(site)
        venv = closed / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        packages = next(venv.glob("lib/python*/site-packages"))
        (packages / "deps.pth").write_text("\n".join(p for p in sys.path if p.endswith("-packages")) + "\n")
        (packages / "venv_only.py").write_text("TWO = 2\n")
        assert closed.stat().st_mode & 0o777 == 0o700
        secret = site / "thinkgym" / "__init__.py"
        jobs = [(FORK_BOMB, TESTS),
                ("import venv_only, colorsys\ndef f(x):\n    return venv_only.TWO * x\n", TESTS),
                (f"def f(x):\n    try:\n        open({str(secret)!r}).read()\n    except OSError:\n"
                 f"        return 2 * x\n", TESTS),
                ("import os\ndef f(x):\n    return 5\n", TESTS)]
        proc = subprocess.run([str(venv / "bin" / "python"), "-c", _FROM_0700, str(site), json.dumps(jobs)],
                              env={"PATH": os.environ["PATH"], "PYTHONPATH": str(site)}, cwd="/",
                              capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(closed)
    assert proc.returncode == 0, proc.stderr
    *info, results = proc.stdout.splitlines()
    level = isolation_info()["level"]
    assert info[0].split() == ["level", level] and not any(line.startswith("warning") for line in info), info
    bomb, venv_import, reader, wrong = json.loads(results)
    assert bomb[1] in ("timeout", "exited_early") and not bomb[2], bomb
    assert venv_import[1] == "passed" and wrong[1] == "test_failed: AssertionError at line 1"
    assert reader[1] == "passed" or level != "namespaces", reader


# ---- other isolation levels -------------------------------------------------------------

LEVEL_CHECKS = [
    ("infinite loop", "while True:\n    pass\n", lambda r: r.reason == "timeout"),
    ("orphan", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(100)\n" + GOOD, lambda r: r.ok),
    ("early exit", "import sys\nsys.exit(0)\n", lambda r: "exited_early" in r.reason),
    ("forged", "import os\nos.write(3, b'THINKGYM 0\\n1\\nP\\n-\\nEND 0\\n')\nos._exit(0)\n",
     lambda r: r.reason == "forged_result"),
    ("always equal", "class A:\n    def __eq__(s, o):\n        return True\ndef f(x):\n    return A()\n",
     lambda r: r.reason.startswith("non_builtin_return")),
    ("memory", "x = ' ' * (1 << 33)\n", lambda r: r.reason == "memory_limit"),
    ("good", GOOD, lambda r: r.ok),
]


@pytest.mark.parametrize("level", ["user-namespaces", "rlimits"])
def test_weaker_levels_forced(level):
    try:
        pool = SandboxPool(workers=2, isolation=level, limits=LIMITS)
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    with pool:
        results = pool.run_many([Job(code, TESTS) for _, code, _ in LEVEL_CHECKS])
    for (name, _, ok), r in zip(LEVEL_CHECKS, results):
        assert ok(r), (level, name, r)
    time.sleep(0.05)
    assert _sandbox_processes() == []


_NON_ROOT_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sbx", sys.argv[1] + "/__init__.py",
                                              submodule_search_locations=[sys.argv[1]])
sbx = importlib.util.module_from_spec(spec); sys.modules["sbx"] = sbx; spec.loader.exec_module(sbx)
jobs = json.loads(sys.argv[3])
with sbx.SandboxPool(workers=2, isolation=sys.argv[2], limits=sbx.Limits(timeout_s=2, cpu_s=2, memory_bytes=256 << 20)) as pool:
    print(json.dumps([pool.level] + [[r.passed, r.reason] for r in pool.run_many([sbx.Job(c, t) for c, t in jobs])]))
"""


@pytest.mark.skipif(not ROOT or not os.path.exists("/usr/bin/python3"), reason="needs root to become nobody")
@pytest.mark.parametrize("user, level", [(65534, "user-namespaces"), (65534, "rlimits"), (0, "rlimits")])
def test_levels_with_the_system_python(user, level):
    """The fallback levels for real, as user nobody and as root (with the system Python,
    which every uid can read: ours sits in /root, which the rlimits level cannot hide)."""
    checks = list(LEVEL_CHECKS)
    if level != "rlimits" or user == 0:  # RLIMIT_NPROC holds there
        checks.append(("fork bomb", FORK_BOMB, lambda r: r.reason in ("timeout", "exited_early")))
    # A copy that user nobody can read, wherever this checkout lives.
    sandbox_dir = tempfile.mkdtemp(prefix="thinkgym-sandbox-")
    try:
        os.chmod(sandbox_dir, 0o755)
        for source in Path(sys.modules[SandboxPool.__module__].__file__).parent.glob("*.py"):
            shutil.copy(source, sandbox_dir)
        proc = subprocess.run(["/usr/bin/python3", "-c", _NON_ROOT_SCRIPT, sandbox_dir, level,
                               json.dumps([[code, TESTS] for _, code, _ in checks])],
                              user=user, group=user, capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(sandbox_dir)
    if "is unavailable" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    got_level, *results = json.loads(proc.stdout)
    assert got_level == level
    for (name, _, ok), (passed, reason) in zip(checks, results):
        assert ok(_Result(passed, reason)), (level, name, reason)
    time.sleep(0.05)
    assert _sandbox_processes() == []


class _Result:
    """What the level checks read of a RunResult that crossed a process boundary as JSON."""

    def __init__(self, passed: int, reason: str) -> None:
        self.passed, self.reason, self.ok = passed, reason, reason == "passed"
