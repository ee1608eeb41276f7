"""Resume replays and history answers are made as the client reads (issue: a
150-byte hello that asked for 200 MB of history, and never read it, took the
server from 31 to 485 MB and froze the chat for 1.45 s)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Client, ProcessServer
from tests.security.conftest import Bystanders

pytestmark = pytest.mark.timeout(90)

ROOMS = ("r0", "r1", "r2")
PER_ROOM = 1500
TEXT = "x" * 4000


def _fill(port: int) -> dict[str, list[int]]:
    """PER_ROOM messages of 4 KB in each room (history 18 MB); their ids."""
    filler = Client(port)
    filler.hello("filler", rooms=list(ROOMS))
    ids: dict[str, list[int]] = {room: [] for room in ROOMS}
    for room in ROOMS:
        frame = json.dumps({"type": "say", "room": room, "text": TEXT}).encode()
        for _ in range(PER_ROOM // 100):
            filler.send_raw(b"".join(b"%-10d%s" % (len(frame), frame) for _ in range(100)))
            for _ in range(100):
                ids[room].append(filler.expect("msg", room=room)["id"])
    filler.send({"type": "quit"})
    filler.close()
    return ids


def _silent_resume(port: int) -> socket.socket:
    """Ask for every room's whole history since 0, then never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    hello = {"type": "hello", "name": f"quiet{sock.fileno()}", "rooms": list(ROOMS)}
    hello["since"] = {room: 0 for room in ROOMS}
    payload = json.dumps(hello).encode()
    sock.sendall(b"%-10d%s" % (len(payload), payload))
    return sock


def test_a_resume_nobody_reads_costs_a_page_not_the_history(
    tmp_path: Path,
    start_server: Callable[..., ProcessServer],
    bystanders: Callable[[int], Bystanders],
) -> None:
    server = start_server("--db", str(tmp_path / "h.db"), "--msg-rate", "0", "--resume-max", "1000")
    ids = _fill(server.port)
    users = bystanders(server.port)
    baseline = users.baseline()
    rss0 = server.rss_kib()
    quiet = [_silent_resume(server.port) for _ in range(10)]
    users.assert_unhurt(baseline, n=20)  # the ten replays are being made meanwhile
    # Ten replays of 54 MB asked for (the whole history of three rooms each):
    # the server holds a page or so of each, not the history.
    grown = server.rss_kib() - rss0
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"

    # A client that reads gets the newest --resume-max of a room at once, and
    # pages the rest with `history before`: every message, once, in order.
    reader = Client(server.port)
    reader.hello("reader", rooms=["r0"], since={"r0": 0})
    got: list[dict[str, Any]] = []
    while True:
        page = reader.expect("history", room="r0")
        got += page["messages"]
        if got[-1]["id"] == ids["r0"][-1]:
            break
    assert [m["id"] for m in got] == ids["r0"][-1000:] and page["more"] is True
    before = got[0]["id"]
    while page["more"]:
        reader.send(
            {"type": "history", "room": "r0", "before": before, "limit": 500, "ref": before}
        )
        page = reader.expect("history", ref=before)
        got = page["messages"] + got
        before = got[0]["id"]
    assert [m["id"] for m in got] == ids["r0"]
    users.assert_unhurt(baseline)
    for sock in quiet:
        sock.close()


def test_what_waits_behind_an_unread_replay_counts_toward_the_sendq(make_server) -> None:
    """Live messages for a client stuck behind its replay wait in the server:
    past --sendq it is cut off like any slow consumer, the room unharmed."""
    srv = make_server(msg_rate=0, sendq=256 * 1024, name_grace=0)
    talker = Client(srv.port)
    talker.hello("talker", rooms=["busy"])
    for i in range(300):
        talker.send({"type": "say", "text": TEXT, "ref": i})
        talker.expect("msg", ref=i)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    hello = json.dumps({"type": "hello", "name": "stuck", "rooms": ["busy"], "since": {"busy": 0}})
    sock.sendall(b"%-10d%s" % (len(hello), hello.encode()))
    talker.expect("join", name="stuck")
    listener = Client(srv.port)
    listener.hello("listener", rooms=["busy"])
    # Each message waits for stuck behind its replay; the kernel's buffers
    # and the sendq hold a few thousand at most before it is cut off.
    for i in range(300, 20_000):
        talker.send({"type": "say", "text": TEXT, "ref": i})
        talker.expect("msg", ref=i)
        if [e for e in talker.skipped if e["type"] == "leave"]:
            break
    leave = [e for e in talker.skipped if e["type"] == "leave"]
    assert leave and leave[0]["name"] == "stuck" and leave[0]["reason"] == "slow consumer"
    assert i < 5_000, i
    for n in range(300, i + 1):
        assert listener.expect("msg", ref=None, text=TEXT)["from"] == "talker", n
    sock.close()
