"""The message framing shared by the sandbox pool and the timeout helpers."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from thinkgym.rewards.sandbox import wire


@pytest.fixture
def pipe():
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def test_round_trip_over_a_pipe_and_a_socket(pipe):
    big = {"data": os.urandom(3 << 20), "n": 1}  # larger than a pipe's buffer and a read chunk
    read, write = pipe
    sender = threading.Thread(target=wire.send, args=(write, big))
    sender.start()
    assert wire.recv(read, timeout=10) == big
    sender.join()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        wire.send(theirs.fileno(), ("call", None))
        wire.send(theirs.fileno(), None)
        assert wire.recv(ours.fileno(), timeout=10) == ("call", None)
        assert wire.recv(ours.fileno()) is None


def test_a_silent_channel_times_out_at_the_deadline(pipe):
    read, write = pipe
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        wire.recv(read, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 2
    os.write(write, struct.pack("<Q", 100) + b"x" * 10)  # the rest never comes
    with pytest.raises(TimeoutError):
        wire.recv(read, timeout=0.2)


def test_eof_between_and_inside_messages(pipe):
    read, write = pipe
    wire.send(write, "last")
    os.write(write, struct.pack("<Q", 100) + b"x" * 10)
    os.close(write)
    assert wire.recv(read) == "last"
    with pytest.raises(EOFError, match="in the middle of a message"):
        wire.recv(read, timeout=5)
    with pytest.raises(EOFError, match="^channel closed$"):
        wire.recv(read, timeout=5)


def test_an_unpicklable_object_raises_before_anything_is_written(pipe):
    read, write = pipe
    with pytest.raises(TypeError):
        wire.send(write, threading.Lock())
    wire.send(write, 1)
    assert wire.recv(read, timeout=5) == 1
