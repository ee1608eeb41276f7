"""Pieces shared by the attack tests: the event loops to run, a non-loopback
address of this host, and waiting for a server to admit clients again."""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Callable

import pytest

from tests.helpers import TIMEOUT, Client

LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
]


def outside_address() -> str | None:
    """A non-loopback address of this host (per-IP limits exempt loopback)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def welcomed(
    port: int, host: str, name: str, connect: Callable[[int, str], Client] = Client
) -> Client:
    """Connect until a hello is welcomed: the server sees a flood's closes a
    moment later. (A TLS connection over a limit is closed before its handshake.)"""
    deadline = time.monotonic() + TIMEOUT
    events = []
    while True:
        try:
            c = connect(port, host)
        except OSError:
            assert time.monotonic() < deadline, "never admitted again"
            continue
        c.send({"type": "hello", "name": name})
        try:
            event = c.recv()
            if event["type"] == "welcome":
                return c
            events.append(event)
        except (AssertionError, OSError):
            pass
        c.close()
        assert time.monotonic() < deadline, f"never admitted again: {events}"
