"""Slowloris against a real process: slow headers and silent connections are cut."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.helpers import Client, ProcessServer
from tests.security.conftest import Bystanders

pytestmark = pytest.mark.timeout(60)

FRAME_TIMEOUT = 1.0
HELLO_TIMEOUT = 1.5
DRIP = 0.1  # seconds between the attacker's bytes


def _drip(clients: list[Client], seconds: float) -> None:
    """Send one more header byte to each client every DRIP seconds for a while.

    This paces the attack; it synchronises nothing. It stops well before the
    frame timeout: a byte sent after the server closed would draw a reset that
    discards the bye still unread.
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for c in clients:
            c.send_raw(b" ")  # a space: still a valid header byte for a long while
        time.sleep(DRIP)


def test_slow_headers_and_silent_clients_are_closed(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server(
        "--frame-timeout", str(FRAME_TIMEOUT), "--hello-timeout", str(HELLO_TIMEOUT)
    )
    users = bystanders(server.port)
    baseline = users.baseline()

    # Registered users that begin a frame and drip its header a byte at a time.
    slow = [Client(server.port) for _ in range(20)]
    for i, c in enumerate(slow):
        c.hello(f"slow{i}")
        c.send_raw(b"1")
    # Never-hello connections: some silent, some dripping a header before hello.
    silent = [Client(server.port) for _ in range(20)]
    slow_hello = [Client(server.port) for _ in range(20)]
    for c in slow_hello:
        c.send_raw(b"9")

    users.assert_unhurt(baseline)
    start = time.monotonic()
    _drip(slow + slow_hello, 0.5 * FRAME_TIMEOUT)
    for c in slow + slow_hello:
        # bye idle (not the hello deadline's bare close) even before hello.
        events = c.wait_closed()
        assert events and events[-1] == {"type": "bye", "reason": "idle"}, events
    # Generous, but under the sum of drip and timeout a clock reset per byte would give.
    assert time.monotonic() - start < 4 * FRAME_TIMEOUT, time.monotonic() - start
    for c in silent:
        # The contract's hello deadline: close (no bye: nothing was said to answer).
        assert c.wait_closed(timeout=HELLO_TIMEOUT + 4) == []
    users.assert_unhurt(baseline)
    for c in slow + silent + slow_hello:
        c.close()


def test_slow_line_mode_client_is_closed(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server(
        "--frame-timeout", str(FRAME_TIMEOUT), "--hello-timeout", str(HELLO_TIMEOUT)
    )
    users = bystanders(server.port)
    baseline = users.baseline()
    line = Client(server.port)
    line.send_raw(b"mallory\n")  # line mode, named
    line.send_raw(b"a")  # a line begun and never finished
    _drip([line], 0.5 * FRAME_TIMEOUT)
    users.assert_unhurt(baseline)
    line.sock.settimeout(FRAME_TIMEOUT + 4)
    data = b""
    while chunk := line.sock.recv(4096):
        data += chunk
    assert data.rstrip().endswith(b"bye: idle") or b"idle" in data.splitlines()[-1], data
    users.assert_unhurt(baseline)
    line.close()
