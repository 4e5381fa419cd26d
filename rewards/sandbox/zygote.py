"""The zygote: one long-lived process per pool slot, which supervises its runs.

Started by the pool as ``python -I -c BOOT <level> <socket fd>`` with a scrubbed
environment, it enters the slot's namespaces, imports the harness and common
modules once, then serves requests from its socket, one at a time. It never runs
a program itself: each run is a fork of it (~2 ms, where a fresh interpreter
costs ~95 ms), so every run starts from the same clean state.

Per run the zygote clones the run's init straight into a new pid and mount
namespace; the init locks itself down (its own /proc and tmpfs mounts, rlimits,
an unprivileged identity) and runs the harness. The zygote drains the run's
output, enforces the wall-clock deadline (SIGKILL to the init takes the whole pid
namespace with it), judges the report and answers on the socket.

This file runs as a script with its folder on sys.path, so it and its sibling
imports (harness, isolation, verdict, wire) never import the thinkgym package,
whose ``__init__`` may pull in heavy libraries.
"""

from __future__ import annotations

import fcntl
import gc
import math
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time

import harness
import isolation
import verdict
import wire

HERE = os.path.dirname(os.path.abspath(__file__))

# Imported once here so that programs using them start fast (a run is a fork).
PRELOAD = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "random", "typing", "hashlib", "copy", "json", "fractions", "decimal", "statistics",
           "datetime", "operator", "dataclasses", "array", "cmath", "numbers", "textwrap")

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
PRIVATE_DIRS = ("/tmp", "/dev/shm", "/var/tmp")  # world-writable: each run gets fresh tmpfs ones
_READ_CHUNK = 1 << 16


def main() -> None:
    level, sock = sys.argv[1], int(sys.argv[2])  # the socket's descriptor
    # The run needs none of this folder's files (it is a fork of us, who imported them
    # as the caller's uid), so it is neither on a run's sys.path nor exposed to it.
    sys.path.remove(HERE)
    os.umask(0o022)  # mount points made below must be readable by the run's uid
    python = isolation.python_dirs()
    try:
        isolation.enter_slot_namespaces(level, python)
        if level == "rlimits":
            isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)  # orphans of runs come back to us
        for name in PRELOAD:
            __import__(name)
    except Exception as exc:  # noqa: BLE001 - reported to the pool, which decides
        wire.send(sock, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    # Programs must not import (and patch) the harness: hide it before snapshotting.
    for name in ("harness", "isolation", "verdict", "wire", "zygote"):
        sys.modules.pop(name, None)
    pristine = harness.snapshot()
    # Each run covers these with fresh tmpfs ones; Python directories inside them stay.
    private = {d: isolation.below(python, d) for d in PRIVATE_DIRS if os.path.isdir(d)}
    gc.freeze()  # keep the heap shared with forked runs (no copy-on-write from GC headers)
    wire.send(sock, {"ok": True})
    while True:
        try:
            request = wire.recv(sock)
        except EOFError:
            return  # the pool closed the socket
        try:
            answer = _supervise(request, level, pristine, private)
        except OSError as exc:
            # Our failure (say fork or pipe hit a resource limit), not the program's: say so
            # and quit, so that the pool starts a clean zygote instead of reusing this one.
            wire.send(sock, {"error": f"{type(exc).__name__}: {exc}"})
            return
        wire.send(sock, answer)


def _supervise(request: dict, level: str, pristine, private: dict) -> dict:
    """Run one request in a fresh sandbox; the answer for the pool."""
    limits = request["limits"]
    nonce = os.urandom(16).hex()
    # Runs of one slot are sequential and leave nothing behind: the zygote's pid
    # makes a uid unique among all concurrent runs on the machine.
    uid = isolation.UID_BASE + os.getpid()
    pipes = [os.pipe() for _ in range(3)]   # stdout, stderr, report
    workdir = None
    start = time.monotonic()
    if level == "rlimits":
        workdir = tempfile.mkdtemp(prefix="thinkgym-run-")
        if os.geteuid() == 0:
            os.chown(workdir, uid, uid)
        pid = os.fork()
    else:
        pid = isolation.fork_into_namespaces(isolation.CLONE_NEWPID | isolation.CLONE_NEWNS)
    if pid == 0:
        _init(request, level, uid, workdir, private, [w for _, w in pipes], nonce, pristine)
    for _, w in pipes:
        os.close(w)
    caps = [limits["max_output_bytes"]] * 2 + [verdict.MAX_REPORT_BYTES + 1]
    after_exit = (lambda: _kill_descendants(pid)) if level == "rlimits" else (lambda: None)
    (out, err, report), status, timed_out = _watch(pid, [r for r, _ in pipes], caps,
                                                   start + limits["timeout_s"], after_exit)
    elapsed = time.monotonic() - start
    if workdir:
        _remove_tree(workdir)
    passed, reason = verdict.decide(report, nonce, request["n_cases"], status, timed_out)
    return {"passed": passed, "reason": reason, "stdout": out, "stderr": err, "elapsed": elapsed}


def _init(request: dict, level: str, uid: int, workdir: str | None, private: dict,
          fds: list, nonce: str, pristine) -> None:
    """The sandboxed process: lock down, then run the harness. Never returns."""
    try:
        workdir = _lock_down(level, request["limits"], uid, workdir, private, fds)
    except BaseException as exc:  # noqa: BLE001 - trusted code: a genuine report of the failure
        os.write(fds[2], verdict.format_report(nonce, [None] * request["n_cases"],
                                               f"{verdict.INFRA_ERROR}: {type(exc).__name__}: {exc}"))
        os._exit(1)
    harness.run(request["source"], request["tests"], request["n_cases"], request["entry_point"],
                pristine, 3, nonce)


def _lock_down(level: str, limits: dict, uid: int, workdir: str | None, private: dict,
               fds: list) -> str:
    """Everything between fork and the program: mounts, fds, rlimits, identity. Returns the cwd."""
    os.setsid()  # own session and process group: kill(0, ...) reaches only the run
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    root = os.geteuid() == 0
    if level != "rlimits":
        isolation.mount("proc", "/proc", "proc", isolation.MS_NOSUID | isolation.MS_NODEV | isolation.MS_NOEXEC)
        options = f"size={limits['tmpfs_bytes']},mode=1777" + (f",uid={uid},gid={uid}" if level == "namespaces" else "")
        for d, python in private.items():
            isolation.cover_keeping(d, python, lambda d=d: isolation.mount(
                "tmpfs", d, "tmpfs", isolation.MS_NOSUID | isolation.MS_NODEV, options))
        workdir = "/tmp"
    _arrange_fds(fds)
    _set_rlimits(limits, nproc=level != "rlimits" or root)
    isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary gives privileges back
    if level == "user-namespaces":
        isolation.enter_user_namespace(isolation.NESTED_UID)  # no capability over our namespaces
        uid = isolation.NESTED_UID
    elif root:
        os.setgroups([])
    if level == "user-namespaces" or root:
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(PATH=SANDBOX_PATH, HOME=workdir, TMPDIR=workdir, LANG="C.UTF-8")
    return workdir


def _arrange_fds(fds: list) -> None:
    """/dev/null on 0, stdout, stderr and report pipes on 1, 2, 3; nothing else open."""
    devnull = os.open("/dev/null", os.O_RDONLY)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in [devnull] + fds]  # out of 0-3's way
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(4, 1 << 16)


def _set_rlimits(limits: dict, nproc: bool) -> None:
    cpu = math.ceil(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc:  # only counted per run where the run has its own uid or user namespace
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)


def _watch(pid: int, fds: list, caps: list, deadline: float, after_exit) -> tuple:
    """Drain ``fds`` (keeping at most ``caps`` bytes each) until the init exits or the deadline.

    Returns (contents, wait status, timed_out). ``after_exit`` runs once the init is
    gone and must leave no writer alive, so that draining the pipes reaches EOF.
    """
    poller, pidfd = select.poll(), os.pidfd_open(pid)
    kept = {fd: bytearray() for fd in fds}
    cap = dict(zip(fds, caps))
    for fd in fds + [pidfd]:
        poller.register(fd, select.POLLIN)
    status, timed_out, open_fds = None, False, set(fds)

    def read(fd: int) -> None:
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            poller.unregister(fd)
            open_fds.discard(fd)
        elif len(kept[fd]) < cap[fd]:
            kept[fd] += chunk[:cap[fd] - len(kept[fd])]

    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            status, timed_out = os.waitpid(pid, 0)[1], True
            break
        for fd, _ in poller.poll(left * 1000):
            if fd == pidfd:
                status = os.waitpid(pid, 0)[1]
            elif fd in open_fds:
                read(fd)
    poller.unregister(pidfd)
    os.close(pidfd)
    after_exit()
    while open_fds:
        for fd, _ in poller.poll():
            read(fd)
    for fd in fds:
        os.close(fd)
    return [bytes(kept[fd]) for fd in fds], status, timed_out


def _kill_descendants(init_pid: int) -> None:
    """Kill and reap every descendant (rlimits level: no pid namespace does it for us).

    As a child subreaper the zygote inherits every orphan, setsid'ed or
    double-forked, so once it has no child left, no descendant is left.
    """
    me = os.getpid()
    try:
        os.killpg(init_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        for pid in _descendants(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def _descendants(root: int) -> list:
    """Pids of all descendants of ``root``, from /proc."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _remove_tree(path: str) -> None:
    """Remove a run's directory, even where the program took its own permissions away."""
    def unlock_and_retry(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
        func(p)
    shutil.rmtree(path, onerror=unlock_and_retry)
