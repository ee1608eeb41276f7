"""Bad input of every kind: the error that comes back, and whether the connection stays.

Each test also checks that two bystanders in the same room carried on untouched.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import Client
from tests.server.support import (
    assert_alive,
    assert_closed,
    assert_error,
    assert_room_carries_on,
)


def _bystanders(open_client, port: int) -> tuple[Client, Client]:
    bob, carol = open_client(port, "bob"), open_client(port, "carol")
    bob.expect("join", name="carol")
    return bob, carol


# ---------------------------------------------------------------------------
# Payload errors: the connection stays


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "say", "text": ""}, "bad_text"),
        ({"type": "say", "text": "nul\x00inside"}, "bad_text"),
        ({"type": "say"}, "bad_text"),
        ({"type": "say", "text": ["list"]}, "bad_text"),
        ({"type": "dm", "to": "bob", "text": ""}, "bad_text"),
        ({"type": "frobnicate"}, "unknown_type"),
        ({"type": "say", "text": "hi", "room": "bad room"}, "bad_room"),
        ({"type": "dm", "to": "b@d", "text": "hi"}, "bad_name"),
        ({"type": "history", "room": "lobby", "before": "x"}, "bad_message"),
    ],
)
def test_bad_request_stays_open(connect, witnesses, message, code):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send({**message, "ref": "bad"})
    assert_error(alice, code, "bad")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)
    # Nothing of the bad request reached the room.
    assert not [e for e in bob.skipped if e["type"] in ("msg", "dm")]


def test_text_too_long(make_server, open_client):
    srv = make_server(max_text=100, msg_rate=0)
    bob, carol = _bystanders(open_client, srv.port)
    alice = open_client(srv.port, "alice")
    assert alice.expect("join", name="alice")
    alice.send({"type": "say", "text": "é" * 51, "ref": "long"})  # 102 bytes, 51 characters
    assert_error(alice, "text_too_long", "long")
    alice.send({"type": "dm", "to": "bob", "text": "x" * 101, "ref": "dm"})
    assert_error(alice, "text_too_long", "dm")
    alice.send({"type": "say", "text": "x" * 100, "ref": "max"})  # exactly max_text is fine
    assert alice.expect("msg")["ref"] == "max"
    assert bob.expect("msg")["text"] == "x" * 100  # the dropped ones never arrived
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        b"{not json",
        b'{"type": "say", "text": "unterminated}',
        b'{"type": "ping"} {"type": "ping"}',
        b"  {]",
    ],
)
def test_bad_json(connect, witnesses, payload):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send_frame(payload)
    assert_error(alice, "bad_json")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_json_not_an_object_or_no_type(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send_frame(b"not json at all")  # plain text from a JSON client: not an object
    assert_error(alice, "bad_json")
    alice.send({"ref": "nt"})
    assert_error(alice, "bad_message", "nt")
    alice.send({"type": 5, "ref": "it"})
    assert_error(alice, "bad_message", "it")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_bad_utf8_stays_open(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send_frame(b'{"type": "say", "text": "\xff\xfe"}')
    assert_error(alice, "bad_utf8")
    alice.send_frame(b'{"type": "say", "text": "\xc3"}')  # a truncated sequence
    assert_error(alice, "bad_utf8")
    assert_alive(alice)  # frame boundaries are intact
    assert_room_carries_on(bob, carol)


def test_bad_utf8_before_hello(connect):
    alice = connect()
    alice.send_frame(b'{"type": "hello", "name": "\xff"}')
    assert_error(alice, "bad_utf8")
    assert alice.hello("alice")["name"] == "alice"


def test_keepalive_frames_are_ignored(connect, witnesses):
    bob, carol = witnesses
    alice = connect()
    alice.send_raw(b"0         " * 3)  # before hello too
    alice.hello("alice")
    alice.send_raw(b"0         " * 3 + b"0000000000")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


@pytest.mark.parametrize("header", [b"%-10d", b"%10d", b"%010d", b"   %-7d"])
def test_every_header_form_accepted(connect, header):
    alice = connect()
    payload = json.dumps({"type": "hello", "name": "alice"}).encode()
    alice.send_raw(header % len(payload) + payload)
    assert alice.expect("welcome")["name"] == "alice"
    payload = json.dumps({"type": "ping", "ref": 1}).encode()
    alice.send_raw(header % len(payload) + payload)
    assert alice.expect("pong")["ref"] == 1


def test_stream_split_at_every_byte(connect):
    alice = connect()
    stream = b"".join(
        b"%-10d" % len(p) + p
        for p in (
            json.dumps({"type": "hello", "name": "alice"}).encode(),
            b"",
            json.dumps({"type": "ping", "ref": "x"}).encode(),
        )
    )
    for i in range(len(stream)):
        alice.send_raw(stream[i : i + 1])
    alice.expect("welcome")
    assert alice.expect("pong")["ref"] == "x"


# ---------------------------------------------------------------------------
# Framing errors: fatal


def test_frame_too_large_refused_before_the_payload(make_server, open_client):
    srv = make_server(max_frame=1000, msg_rate=0)
    bob, carol = _bystanders(open_client, srv.port)
    alice = open_client(srv.port, "alice")
    alice.send_raw(b"1001      ")  # the header alone: no payload is ever sent
    events = assert_closed(alice, "protocol_error")
    assert [(e["type"], e.get("code")) for e in events[-2:]] == [
        ("error", "frame_too_large"),
        ("bye", None),
    ]
    assert bob.expect("leave", name="alice")
    assert_room_carries_on(bob, carol)


def test_exactly_max_frame_is_fine(make_server, open_client):
    srv = make_server(max_frame=1000, max_text=1000, msg_rate=0)
    alice = open_client(srv.port, "alice")
    frame = json.dumps({"type": "say", "text": "", "ref": "max"}).encode()
    text = "x" * (1000 - len(frame))
    payload = json.dumps({"type": "say", "text": text, "ref": "max"}).encode()
    assert len(payload) == 1000
    alice.send_frame(payload)
    assert alice.expect("msg")["ref"] == "max"
    assert_alive(alice)


def test_frame_too_large_before_hello(connect, witnesses):
    bob, carol = witnesses
    alice = connect()
    alice.send_raw(b"9999999999")
    events = assert_closed(alice, "protocol_error")
    assert events[0]["code"] == "frame_too_large"
    assert_room_carries_on(bob, carol)


@pytest.mark.parametrize(
    "header",
    [
        b"+5        ",
        b"-5        ",
        b"1 2       ",
        b"5\t        ",
        b"          ",
        "\u0665".encode().ljust(10),  # a non-ASCII digit
    ],
)
def test_bad_header_closes(connect, witnesses, header):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send_raw(header + b"hello")
    events = assert_closed(alice, None)  # error, then close: no bye for a bad header
    assert events[-1]["type"] == "error" and events[-1]["code"] == "bad_header"
    assert bob.expect("leave", name="alice")
    assert_room_carries_on(bob, carol)


@pytest.mark.parametrize("header", [b"5\r        ", b"5\n        ", b"5\x00        "])
def test_bad_header_control_bytes(connect, witnesses, header):
    """CR, LF and NUL inside the header of a framed client (line-mode sniffing is over)."""
    bob, carol = witnesses
    alice = connect("alice")
    alice.send_raw(header + b"hello")
    events = assert_closed(alice, None)
    assert events[-1]["code"] == "bad_header"
    assert_room_carries_on(bob, carol)


def test_frame_timeout(make_server, open_client):
    srv = make_server(frame_timeout=0.3, msg_rate=0, name_grace=0)
    bob, carol = _bystanders(open_client, srv.port)
    alice = open_client(srv.port, "alice")
    dave = open_client(srv.port, "dave")
    alice.send_raw(b"20        {")  # a frame begun, never finished
    dave.send_raw(b"5  ")  # a header begun, never finished
    started = time.monotonic()
    assert_closed(alice, "idle")
    assert_closed(dave, "idle")
    assert time.monotonic() - started >= 0.2
    assert bob.expect("leave", name="alice")["reason"] == "idle"
    assert_room_carries_on(bob, carol)


def test_frame_timeout_before_hello(make_server, open_client):
    srv = make_server(frame_timeout=0.3, msg_rate=0)
    alice = open_client(srv.port)
    alice.send_raw(b"20        {")
    assert_closed(alice, "idle")


def test_frame_timeout_spares_idle_clients_between_frames(make_server, open_client):
    srv = make_server(frame_timeout=0.3, msg_rate=0)
    idle = open_client(srv.port, "idle")  # no partial frame: only quiet
    stuck = open_client(srv.port, "stuck")
    stuck.send_raw(b"9")
    assert_closed(stuck, "idle")  # 0.3 s have passed for both
    assert_alive(idle)
