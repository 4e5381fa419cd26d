"""Length-prefixed pickle messages over a file descriptor, between trusted processes.

Used over a socket between a sandbox pool slot and its zygote, and over pipes
between :mod:`thinkgym.rewards.timeout` and its helpers. A message is its pickle's
length (8 bytes, little-endian) followed by the pickle. The descriptor must be in
blocking mode (as pipes and sockets are unless a timeout is set on them); waits
for input use ``poll``, which, unlike ``select``, takes descriptors above 1023.

Must import nothing from the thinkgym package (see ``zygote.py``).
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import time

_HEADER = struct.Struct("<Q")
_CHUNK = 1 << 20


def send(fd: int, obj) -> None:
    """Write ``obj`` as one message. ``obj`` is pickled before anything is written, so
    an object that cannot be pickled raises here and leaves the channel as it was."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def recv(fd: int, timeout: float | None = None):
    """The next message's object.

    Raises TimeoutError if the whole message has not arrived within ``timeout`` seconds
    (None: wait for ever), and EOFError if the other end closes the channel first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline, started=False))
    return pickle.loads(_read_exact(fd, size, deadline, started=True))


def _read_exact(fd: int, n: int, deadline: float | None, started: bool) -> bytes:
    """``n`` bytes; ``started`` says whether earlier bytes of this message were read."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError("no complete message within the time limit")
        chunk = os.read(fd, min(n - len(buf), _CHUNK))
        if not chunk:
            raise EOFError("channel closed in the middle of a message" if started or buf else "channel closed")
        buf += chunk
    return bytes(buf)
