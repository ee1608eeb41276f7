"""What one small write to a loopback TCP socket costs on this machine, now.

A fan-out server's CPU goes mostly to these writes (one per member per loop
turn), and on a shared virtual machine their cost moves: 5 µs one minute,
9 µs ten minutes later, on the same VM. Every run reports it, measured just
before, so that figures from different runs can be compared at all.

The sender writes 100-byte messages round-robin to a few hundred sockets
from the server's CPU; a reader process on the generator's CPUs drains
them, as the benchmark's clients would.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import socket
import time
from collections.abc import Iterator

from .launcher import affinity_kept, pin_self

CONNS = 400
ROUNDS = 40
SIZE = 100


def loopback_write_us(
    sender_cpus: list[int] | None = None,
    reader_cpus: list[int] | None = None,
    conns: int = CONNS,
    rounds: int = ROUNDS,
) -> float | None:
    """Microseconds per ``send()`` of 100 bytes, or None when it cannot be measured."""
    try:
        with _pair(conns, reader_cpus) as socks, affinity_kept():
            pin_self(sender_cpus)
            data = b"x" * SIZE
            start = time.perf_counter()
            for _ in range(rounds):
                for sock in socks:
                    sock.send(data)
            elapsed = time.perf_counter() - start
    except OSError:
        return None
    return round(elapsed / (conns * rounds) * 1e6, 2)


@contextlib.contextmanager
def _pair(conns: int, reader_cpus: list[int] | None) -> Iterator[list[socket.socket]]:
    """``conns`` accepted sockets whose other ends a reader process drains."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=conns)
    listener.settimeout(10.0)
    port = listener.getsockname()[1]
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    reader = ctx.Process(
        target=_drain, args=(port, conns, conns * ROUNDS * SIZE, reader_cpus), daemon=True
    )
    reader.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(conns):
            sock, _ = listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()
        listener.close()
        reader.join(timeout=5)
        if reader.is_alive():
            reader.kill()


def _drain(port: int, conns: int, total: int, cpus: list[int] | None) -> None:
    pin_self(cpus)
    sel = selectors.DefaultSelector()
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    got = 0
    deadline = time.monotonic() + 30
    while got < total and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                continue
            got += len(data)
