"""Huge lengths, 100 MB of garbage and a million tiny frames: memory stays bounded."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from tests.helpers import Client, ProcessServer
from tests.security.conftest import Bystanders

pytestmark = pytest.mark.timeout(60)

RSS_BOUND_KIB = 64 * 1024  # growth allowed over the whole attack: 64 MiB


def _stream_until_cut(client: Client, chunk: bytes, total: int) -> int:
    """Send ``total`` bytes in chunks; return how many went before the server cut us off."""
    sent = 0
    try:
        while sent < total:
            client.sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # EPIPE / ECONNRESET: the server closed on us
        pass
    return sent


def test_ten_digit_length_is_refused_before_any_payload(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server()
    users = bystanders(server.port)
    baseline = users.baseline()
    rss0 = server.rss_kib()
    for header in (b"9999999999", b"0000099999", b"  65537   "):
        c = Client(server.port)
        c.hello("bigmouth")
        c.send_raw(header + b"{")  # the payload's first byte, the rest never comes
        events = c.wait_closed()
        assert [e["type"] for e in events[-2:]] == ["error", "bye"], events
        assert events[-2]["code"] == "frame_too_large", events
        assert events[-1]["reason"] == "protocol_error", events
        c.close()
    assert server.rss_kib() - rss0 < RSS_BOUND_KIB
    users.assert_unhurt(baseline)


def test_100_mb_of_garbage_is_cut_off_early(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server()
    users = bystanders(server.port)
    baseline = users.baseline()
    rss0 = server.rss_kib()
    total = 100 * 1024 * 1024
    # No newline and not a header: a line-mode "name" that never ends.
    garbage = Client(server.port)
    sent = _stream_until_cut(garbage, b"\xfe garbage \x1b[2J" * 4096, total)
    assert sent < 16 * 1024 * 1024, sent  # cut at max_frame (64 KiB) plus socket buffers
    garbage.close()
    assert server.rss_kib() - rss0 < RSS_BOUND_KIB, (server.rss_kib(), rss0)
    users.assert_unhurt(baseline)


def test_a_million_one_byte_frames(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    """1-byte payloads that are not JSON, each drawing an error (the costliest
    reading: every 11-byte frame makes the server parse, build and queue an
    error). The default rate limit throttles the attacker: its reading pauses,
    the kernel buffers fill, and it gets no more answers than the rate allows.
    """
    server = start_server()  # default --msg-rate 20 --msg-burst 40
    users = bystanders(server.port)
    baseline = users.baseline()
    rss0 = server.rss_kib()
    attacker = Client(server.port)
    attacker.hello("tiny")
    batch = b"1         x" * 10_000
    start = time.monotonic()
    # Non-blocking: send until the kernel buffers are full, which happens once
    # the throttled server stops reading (no timing involved).
    attacker.sock.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < len(batch) * 100:
            sent += attacker.sock.send(batch)
    attacker.sock.setblocking(True)
    assert 0 < sent < len(batch) * 100, sent
    users.assert_unhurt(baseline, n=10)  # during the attack
    # Count its answers for a while: no more than the burst plus the rate allows
    # (the server keeps answering at the rate: the backlog is the attacker's own).
    errors = 0
    deadline = start + 2.0
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = attacker.recv(timeout=left)
        except AssertionError:
            break
        if event["type"] == "error":  # (the rest: its own join and history)
            assert event["code"] == "bad_json", event
            errors += 1
    elapsed = time.monotonic() - start
    assert 40 <= errors <= 40 + 20 * elapsed + 5, (errors, elapsed)
    assert server.rss_kib() - rss0 < RSS_BOUND_KIB, (server.rss_kib(), rss0)
    users.assert_unhurt(baseline)
    attacker.close()
