"""Requests that cost the server much are answered within one frame and
charged against the sender's rate (issue: with 10 000 rooms a `rooms`
answer was 1.56 MB, 24 times the announced max_frame)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Client, ProcessServer
from tests.security.conftest import Bystanders
from tests.server.support import assert_alive, assert_error

pytestmark = pytest.mark.timeout(90)

N_ROOMS = 10_000


def _frames(objs: list[dict[str, Any]]) -> bytes:
    return b"".join(b"%-10d%s" % (len(p), p) for p in (json.dumps(o).encode() for o in objs))


def _make_rooms(port: int) -> list[str]:
    """N_ROOMS rooms with the longest names there are (32 characters)."""
    names = [f"room-{i:05d}-" + "x" * 21 for i in range(N_ROOMS)]
    holders = []
    for start in range(0, N_ROOMS, 1000):
        holder = Client(port)
        holder.hello(f"holder{start}", rooms=names[start : start + 1000])
        holder.expect("history", room=names[start + 999], timeout=30)
        holders.append(holder)
    return sorted(names)


def test_rooms_are_paged_within_max_frame(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server("--max-rooms", "1000", "--msg-rate", "0")
    names = _make_rooms(server.port)
    users = bystanders(server.port)
    baseline = users.baseline()
    asker = Client(server.port)
    max_frame = asker.hello("asker")["limits"]["max_frame"]
    listed: list[str] = []
    after = None
    while True:
        req: dict[str, Any] = {"type": "rooms", "ref": len(listed)}
        if after is not None:
            req["after"] = after
        asker.send(req)
        payload = asker.recv_payload()
        while json.loads(payload).get("ref") != len(listed):
            payload = asker.recv_payload()
        assert len(payload) <= max_frame, len(payload)
        page = json.loads(payload)
        assert 0 < len(page["rooms"]) <= 500
        listed += [r["name"] for r in page["rooms"] if r["name"].startswith("room-")]
        if not page["more"]:
            break
        after = page["rooms"][-1]["name"]
    assert listed == names  # every room once, in name order
    asker.send({"type": "rooms", "limit": 3, "after": names[100], "ref": "three"})
    page = asker.expect("rooms", ref="three")
    assert [r["name"] for r in page["rooms"]] == names[101:104] and page["more"] is True
    for bad, code in (
        ({"limit": 0}, "bad_message"),
        ({"limit": 501}, "bad_message"),
        ({"after": "no spaces"}, "bad_room"),
        ({"after": 5}, "bad_room"),
    ):
        asker.send({"type": "rooms", "ref": "bad", **bad})
        assert_error(asker, code, "bad")
    assert_alive(asker)

    # Ten clients each asking five whole pages ahead of the replies: they are
    # charged for what they ask, and nobody else waits for them.
    askers = [Client(server.port) for _ in range(10)]
    for i, c in enumerate(askers):
        c.hello(f"greedy{i}")
    for c in askers:
        c.send_raw(_frames([{"type": "rooms", "ref": n} for n in range(5)]))
    users.assert_unhurt(baseline, n=10)
    for c in askers:
        for n in range(5):
            assert len(c.expect("rooms", ref=n, timeout=10)["rooms"]) == 500


def test_big_history_pages_from_many_clients(
    tmp_path: Path,
    start_server: Callable[..., ProcessServer],
    bystanders: Callable[[int], Bystanders],
) -> None:
    server = start_server("--db", str(tmp_path / "h.db"), "--msg-rate", "0")
    filler = Client(server.port)
    filler.hello("filler", rooms=["big"])
    text = "y" * 4000
    filler.send_raw(_frames([{"type": "say", "text": text, "ref": i} for i in range(1000)]))
    filler.expect("msg", ref=999, timeout=30)
    users = bystanders(server.port)
    baseline = users.baseline()
    readers = [Client(server.port) for _ in range(10)]
    for i, c in enumerate(readers):
        c.hello(f"reader{i}", rooms=["big"])
        c.expect("history", room="big")
        c.send_raw(
            _frames([{"type": "history", "room": "big", "limit": 500, "ref": n} for n in range(5)])
        )
    users.assert_unhurt(baseline, n=10)
    for c in readers:
        for n in range(5):
            page = c.expect("history", ref=n, timeout=10)
            # As many as fit in one frame (about 16 of 4 KB), newest first kept.
            assert 10 <= len(page["messages"]) < 20 and page["more"] is True


def _count_within(client: Client, type_: str, seconds: float) -> int:
    """How many events of a type arrive in the next ``seconds`` (a rate, observed)."""
    deadline = time.monotonic() + seconds
    n = 0
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = client.recv(timeout=left)
        except AssertionError:
            break
        n += event["type"] == type_
    return n


def test_requests_before_hello_are_rate_limited(make_server) -> None:
    srv = make_server(msg_rate=5, msg_burst=5)
    c = Client(srv.port)
    c.send_raw(_frames([{"type": "ping", "ref": n} for n in range(50)]))
    # 5 at once, then 5 a second: nowhere near the 50 asked.
    answered = _count_within(c, "error", 1.0)
    assert 5 <= answered <= 12, answered


def test_join_and_leave_are_priced(make_server) -> None:
    srv = make_server(msg_rate=10, msg_burst=40)
    watcher = Client(srv.port)
    watcher.hello("watcher", rooms=["door"])
    flapper = Client(srv.port)
    flapper.hello("flapper", rooms=["lobby"])
    flapper.send_raw(
        _frames([{"type": t, "room": "door"} for _ in range(40) for t in ("join", "leave")])
    )
    # A join costs 4 and a leave 2: about 7 pairs from the burst, one more a second.
    joins = _count_within(watcher, "join", 1.0)
    assert 3 <= joins <= 10, joins
