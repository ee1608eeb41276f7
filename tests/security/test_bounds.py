"""Field bounds (issue 12, low items): ids past 2^53, unbounded free text, long
hello strings. Each gets a clear error; the connection stays unless it was a hello."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Client, LineClient, ProcessServer
from tests.security.conftest import Bystanders
from tests.server.support import assert_alive, assert_closed, assert_error

pytestmark = pytest.mark.timeout(60)

HUGE_IDS = [2**63, 2**64 - 1, 2**53 + 1]  # SQLite's int64 overflowed from 2^63


def test_ids_past_2_53_answer_bad_message_and_log_no_traceback(
    tmp_path: Path, bystanders: Callable[[int], Bystanders]
) -> None:
    # A real process on a real SQLite file: the OverflowError came from there.
    server = ProcessServer("--db", str(tmp_path / "history.db"))
    try:
        users = bystanders(server.port)
        baseline = users.baseline()
        mallory = Client(server.port)
        mallory.hello("mallory")
        for i, before in enumerate(HUGE_IDS):
            mallory.send({"type": "history", "room": "lobby", "before": before, "ref": i})
            assert "before" in assert_error(mallory, "bad_message", i)["message"]
        mallory.send({"type": "history", "room": "lobby", "before": 2**53, "ref": "top"})
        assert mallory.expect("history", ref="top")["room"] == "lobby"
        assert_alive(mallory)
        for since in HUGE_IDS:
            resumer = Client(server.port)
            resumer.send(
                {"type": "hello", "name": "resumer", "since": {"lobby": since}, "ref": "r"}
            )
            events = resumer.wait_closed()
            assert [(e["type"], e["code"], e["ref"]) for e in events] == [
                ("error", "bad_message", "r")
            ], events
            resumer.close()
        users.assert_unhurt(baseline)
        # Everything logged so far comes before this line (stderr is in order).
        marker = Client(server.port)
        marker.hello("marker")
        server.wait_log(r"marker: hello")
        logged = "".join(server.log)
        assert not re.search(r"Traceback|OverflowError|internal error", logged), logged
        marker.close()
        mallory.close()
    finally:
        server.stop()


def test_free_text_reasons_are_bounded_like_text(connect) -> None:
    bob = connect("bob")
    mallory = connect("mallory")
    bob.expect("join", name="mallory")
    # 60 KB with a NUL: too long is said first; a short one with NUL is bad text.
    mallory.send({"type": "leave", "room": "lobby", "reason": "x" * 60_000 + "\x00", "ref": 1})
    assert "reason" in assert_error(mallory, "text_too_long", 1)["message"]
    mallory.send({"type": "leave", "room": "lobby", "reason": "bye\x00", "ref": 2})
    assert_error(mallory, "bad_text", 2)
    mallory.send({"type": "quit", "reason": "y" * 4097, "ref": 3})  # was cut to 200 and obeyed
    assert_error(mallory, "text_too_long", 3)
    assert_alive(mallory)
    mallory.send({"type": "who", "room": "lobby", "ref": "w"})
    assert "mallory" in mallory.expect("who", ref="w")["names"]  # no leave happened
    # Within the bound, the whole reason is kept (no cut at 200 characters).
    mallory.send({"type": "quit", "reason": "z" * 4096})
    assert bob.expect("leave", name="mallory")["reason"] == "z" * 4096
    assert [e for e in bob.skipped if e["type"] == "leave"] == []
    assert_closed(mallory, "quit")


def test_line_commands_bound_their_free_text(connect, server) -> None:
    alice = connect("alice")
    nc = LineClient(server.port)
    try:
        nc.send(b"dave\n")
        nc.expect("welcome")
        alice.expect("join", name="dave")
        nc.send(b"/leave lobby " + b"w" * 5000 + b"\n")
        assert "!! text_too_long: " in nc.expect(r"!! ")
        nc.send(b"/quit " + b"q" * 5000 + b"\n")
        assert "!! text_too_long: " in nc.expect(r"!! ")
        nc.send("/history \u00b2\n".encode())  # isdigit() but not int(): it crashed
        assert "!! bad_message: " in nc.expect(r"!! ")
        nc.send(b"/history " + b"9" * 5000 + b"\n")
        assert "!! bad_message: " in nc.expect(r"!! ")
        nc.send(b"still here\n")
        assert alice.expect("msg", text="still here")["from"] == "dave"
        nc.send(b"/leave lobby gone fishing\n")
        assert alice.expect("leave", name="dave")["reason"] == "gone fishing"
    finally:
        nc.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [("session", "s" * 257), ("password", "p" * 1025), ("session", 5)],
)
def test_long_hello_strings_are_refused(connect, server, field, value) -> None:
    alice = connect("alice")
    client = Client(server.port)
    try:
        client.send({"type": "hello", "name": "alice", field: value, "ref": "h"})
        events = client.wait_closed()
        assert [(e["type"], e["code"], e["ref"]) for e in events] == [
            ("error", "bad_message", "h")
        ], events
        assert field in events[0]["message"]
    finally:
        client.close()
    assert_alive(alice)
