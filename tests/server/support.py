"""Checks shared by the server tests: is a connection alive, closed, unharmed."""

from __future__ import annotations

import itertools
import re
from typing import Any

from tests.helpers import Client

TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_counter = itertools.count()


def assert_alive(client: Client) -> None:
    """The connection stays: a later ping still gets its pong (with the ref)."""
    ref = f"alive-{next(_counter)}"
    client.send({"type": "ping", "ref": ref})
    pong = client.expect("pong", ref=ref)
    assert TS_RE.fullmatch(pong["ts"]), pong


def assert_closed(client: Client, bye: str | None) -> list[dict[str, Any]]:
    """Read to EOF; the last event is ``bye`` with this reason (or no bye at all)."""
    events = client.wait_closed()
    byes = [e for e in events if e["type"] == "bye"]
    if bye is None:
        assert not byes, events
    else:
        assert byes and events[-1] == {"type": "bye", "reason": bye}, events
    return events


def assert_error(client: Client, code: str, ref: Any = None) -> dict[str, Any]:
    """The next error is this one, with the ref of the request that caused it."""
    event = client.expect("error")
    _no_trouble(client)  # no other error came first
    assert event["code"] == code, event
    assert event.get("ref") == ref, event
    assert isinstance(event["message"], str) and event["message"], event
    return event


def assert_room_carries_on(a: Client, b: Client, room: str = "lobby") -> None:
    """Two members of a room can still say and receive, and were sent no error or bye."""
    for speaker, listener in ((a, b), (b, a)):
        text = f"carry on {next(_counter)}"
        speaker.send({"type": "say", "text": text, "room": room, "ref": text})
        echo = speaker.expect("msg", text=text)
        assert echo["ref"] == text and echo["room"] == room
        _no_trouble(speaker)
        got = listener.expect("msg", text=text)
        assert got["id"] == echo["id"] and "ref" not in got
        _no_trouble(listener)


def _no_trouble(client: Client) -> None:
    bad = [e for e in client.skipped if e["type"] in ("error", "bye")]
    assert not bad, bad
