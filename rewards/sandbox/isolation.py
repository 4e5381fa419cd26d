"""Isolation levels and the Linux system calls that build them.

Three levels, strongest first:

``namespaces``       (root) each slot's zygote lives in its own network, IPC, UTS and
                     mount namespace with the host filesystem remounted read-only;
                     each run gets a fresh pid and mount namespace (its own /proc,
                     private tmpfs /tmp, /dev/shm, /var/tmp) and runs as a unique
                     unprivileged uid, so RLIMIT_NPROC is enforced per run. The
                     interpreter's directories stay readable to that uid wherever
                     they live (see ``_expose_python``); the sandbox's own files
                     are not needed (a run is a fork of a zygote that imported them).
``user-namespaces``  (unprivileged, if the kernel allows user namespaces) the same
                     namespaces, created inside a user namespace; each run drops into a
                     nested user namespace where it holds no capability over the
                     namespaces it lives in. The host uid is the caller's own.
``rlimits``          no namespaces: a new session, rlimits, a child subreaper that
                     kills every descendant, a temporary directory. As root the run
                     also gets a unique uid; otherwise it shares the caller's uid (it
                     can see the network, other processes and the caller's files).

This module must import nothing from the thinkgym package: the zygote process
imports it as a top-level module (see ``zygote.py``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

LEVELS = ("namespaces", "user-namespaces", "rlimits")
ENV_VAR = "THINKGYM_SANDBOX_ISOLATION"

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# The new mount API has the same syscall numbers on every architecture.
_SYS_OPEN_TREE = 428      # Linux 5.2
_SYS_MOVE_MOUNT = 429     # Linux 5.2
_SYS_MOUNT_SETATTR = 442  # Linux 5.12
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_SIGCHLD = 17
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

# Inside a run's nested user namespace (user-namespaces level) the program runs as this uid.
NESTED_UID = 1000
# At the namespaces/rlimits levels as root, a run's uid is UID_BASE + its supervisor's
# pid: unique among concurrent runs on the machine, and owned by no file or process.
UID_BASE = 1 << 30

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


# PyDLL: the GIL stays held across the clone, as os.fork holds it.
_libc_gil = ctypes.PyDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    """unshare(2): Python 3.11 has no os.unshare."""
    _check(_libc.unshare(flags), "unshare")


def fork_into_namespaces(flags: int) -> int:
    """os.fork() whose child starts in new namespaces (``flags``: CLONE_NEWPID...).

    One clone(2) instead of fork + unshare + fork: a new pid namespace only
    applies to the children of whoever unshares it, so this saves a whole
    process per run (~2 ms of CPU here). Python's own fork bookkeeping runs
    around it, exactly as in os.fork; the zygote is single-threaded.
    """
    if _SYS_CLONE is None:
        raise OSError(f"clone with namespaces is not wired for {platform.machine()}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc_gil.syscall(_SYS_CLONE, flags | _SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"clone: {os.strerror(errno)}")
    return pid


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags, data.encode() if data else None),
           f"mount {target}")


def prctl(option: int, arg: int = 0) -> None:
    """prctl(2) with one argument."""
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def make_root_readonly() -> None:
    """Make every mount of this mount namespace read-only (mount_setattr, AT_RECURSIVE)."""
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE,
                         ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr /")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_user_namespace(inside_id: int) -> None:
    """Create a user namespace and map ``inside_id`` in it to our uid and gid outside.

    An unprivileged process may map exactly its own ids, once setgroups is denied.
    """
    outside_uid, outside_gid = os.geteuid(), os.getegid()  # read before: unmapped after unshare
    unshare(CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside_id} {outside_uid} 1")
    _write("/proc/self/gid_map", f"{inside_id} {outside_gid} 1")


def clone_tree(path: str) -> int:
    """An fd holding a detached copy of the mounts at and below ``path`` (open_tree(2)).

    The copy stays reachable through the fd after ``path`` itself is covered.
    """
    fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(),
                       _OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_RECURSIVE)
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"open_tree {path}: {os.strerror(errno)}")
    return fd


def attach_tree(fd: int, target: str) -> None:
    """Mount the detached tree ``fd`` (from :func:`clone_tree`) on ``target`` (move_mount(2))."""
    _check(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
           f"move_mount {target}")


def cover_keeping(cover: str, keep: list, mount_cover) -> None:
    """Cover the directory ``cover`` (``mount_cover()`` mounts over it), yet keep the
    paths ``keep`` below it visible at the same place.

    Each kept path is cloned before the cover hides it and attached again on top,
    so nothing needs a staging directory, wherever the paths live.
    """
    trees = [(path, clone_tree(path)) for path in keep]
    try:
        mount_cover()
        for path, fd in trees:
            os.makedirs(path, exist_ok=True)
            attach_tree(fd, path)
    finally:
        for _, fd in trees:
            os.close(fd)


def python_dirs() -> list:
    """The interpreter's directories (prefixes and ``sys.path``), real paths, none inside another.

    A run imports from these, and from nothing else on the host.
    """
    wanted = {os.path.realpath(p) for p in [sys.base_prefix, sys.prefix, *sys.path] if os.path.isdir(p)}
    return sorted(p for p in wanted if not any(p.startswith(q + os.sep) for q in wanted))


def below(paths: list, directory: str) -> list:
    """The ``paths`` strictly inside ``directory``."""
    return [p for p in paths if p.startswith(directory.rstrip(os.sep) + os.sep)]


def enter_slot_namespaces(level: str, python: list) -> None:
    """Called once by each zygote: the namespaces every run of that slot shares.

    No network (a fresh network namespace has only a loopback device, down), no
    System V IPC or hostname shared with the host, a private mount table whose
    mounts are all read-only, so later per-run mounts never reach the host.
    ``python``: the :func:`python_dirs` that runs must be able to read.
    """
    if level == "rlimits":
        return
    flags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS
    if level == "user-namespaces":
        enter_user_namespace(0)  # as its root: the capabilities to build the rest
        unshare(flags)
    elif level == "namespaces":
        if os.geteuid() != 0:
            raise PermissionError("the namespaces level needs root (try user-namespaces)")
        unshare(flags)
    else:
        raise ValueError(f"unknown isolation level {level!r}; expected one of {LEVELS}")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    if level == "namespaces":
        _expose_python(python)
    make_root_readonly()


def _closed_ancestor(path: str) -> str | None:
    """The top-most directory above ``path`` that others may not traverse (e.g. /root)."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    for i in range(1, len(parts)):
        ancestor = os.sep + os.path.join(*parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _expose_python(python: list) -> None:
    """Let the unprivileged run uid import the stdlib and site-packages, and nothing else.

    Python or a venv often live under a directory only root may enter (pyenv in
    /root, a 0700 temporary directory). In the zygote's mount namespace
    such a directory is covered with an empty tmpfs, and the Python directories
    below it are mounted back in place, so the run sees the interpreter's files but
    none of the owner's others.
    """
    hidden: dict = {}
    for path in python:
        closed = _closed_ancestor(path)
        if closed is not None:
            hidden.setdefault(closed, []).append(path)
    for closed, paths in hidden.items():
        cover_keeping(closed, paths, lambda closed=closed: mount("tmpfs", closed, "tmpfs", 0, "mode=755"))


def describe(level: str) -> dict:
    """What a level protects against, for ``isolation_info`` and ``thinkgym sandbox info``."""
    root = os.geteuid() == 0
    namespaced = level in ("namespaces", "user-namespaces")
    # The kernel never enforces RLIMIT_NPROC on host root, the owner of a forced
    # user-namespaces run as root; a non-root rlimits run would share the caller's count.
    nproc = level == "namespaces" or (level == "user-namespaces") != root
    return {
        "level": level,
        "pid_namespace": namespaced,           # no view of other processes; whole tree dies with its init
        "network_namespace": namespaced,       # no network, not even loopback
        "ipc_uts_namespaces": namespaced,
        "readonly_host_filesystem": namespaced,
        "private_tmp": namespaced,             # fresh tmpfs /tmp, /dev/shm, /var/tmp per run
        "unique_uid": level == "namespaces" or (level == "rlimits" and root),
        "nested_user_namespace": level == "user-namespaces",
        "nproc_limit": nproc,                  # RLIMIT_NPROC counts per uid, or per user namespace
        "rlimits": ["AS", "CPU", "FSIZE", "NOFILE", "CORE"] + (["NPROC"] if nproc else []),
        "no_new_privs": True,
        "scrubbed_environment": True,
        "kills_escaped_descendants": True,     # pid namespace, or subreaper sweep at rlimits
    }
