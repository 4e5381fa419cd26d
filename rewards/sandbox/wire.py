"""Length-prefixed pickle messages between a pool slot and its zygote (both trusted).

Must import nothing from the thinkgym package (see ``zygote.py``).
"""

from __future__ import annotations

import pickle
import socket
import struct

_HEADER = struct.Struct("<Q")


def send(sock: socket.socket, obj) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket, timeout: float | None = None):
    """The next message, or None if the peer closed. Raises TimeoutError after ``timeout`` s."""
    sock.settimeout(timeout)
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    payload = _recv_exact(sock, _HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)
