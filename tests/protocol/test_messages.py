"""Requests and events: parsing, validation, encoding and the JSON round trip."""

from __future__ import annotations

import calendar
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatserver.protocol import (
    Bye,
    Dm,
    DmEvent,
    ErrorCode,
    ErrorEvent,
    FrameDecoder,
    Hello,
    History,
    HistoryReply,
    Join,
    JoinEvent,
    Leave,
    LeaveEvent,
    MsgEvent,
    Nick,
    NickEvent,
    Ping,
    Pong,
    ProtocolError,
    Quit,
    RoomInfo,
    Rooms,
    RoomsReply,
    Say,
    Welcome,
    Who,
    WhoReply,
    check_name,
    check_ref,
    check_room,
    check_text,
    check_token,
    encode,
    encode_payload,
    format_ts,
    parse_event,
    parse_request,
)


def req(obj: dict) -> object:
    return parse_request(json.dumps(obj).encode())


def refused(obj: dict | bytes, code: ErrorCode) -> ProtocolError:
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with pytest.raises(ProtocolError) as info:
        parse_request(payload)
    assert info.value.code is code, info.value
    return info.value


# ---------------------------------------------------------------------------
# Requests


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "hello", "name": "alice"}, Hello(name="alice")),
        (
            {"type": "hello", "name": "bob", "proto": 2, "rooms": ["#Dev", "dev", "x"], "ref": 1},
            Hello(name="bob", proto=2, rooms=("dev", "x"), ref=1),
        ),
        (
            {"type": "hello", "name": "c", "since": {"lobby": 5}, "session": "tok"},
            Hello(name="c", since={"lobby": 5}, session="tok"),
        ),
        ({"type": "say", "text": "hi"}, Say(text="hi")),
        ({"type": "say", "text": "hi", "room": "#dev", "ref": "r"}, Say("hi", "dev", ref="r")),
        ({"type": "dm", "to": "bob", "text": "yo"}, Dm(to="bob", text="yo")),
        ({"type": "join", "room": "dev"}, Join(room="dev")),
        ({"type": "leave", "room": "dev"}, Leave(room="dev")),
        ({"type": "leave"}, Leave()),
        ({"type": "nick", "name": "zed"}, Nick(name="zed")),
        ({"type": "who"}, Who()),
        ({"type": "who", "room": "dev"}, Who(room="dev")),
        ({"type": "rooms"}, Rooms()),
        ({"type": "history", "room": "dev"}, History(room="dev", limit=50)),
        ({"type": "history", "room": "d", "before": 9, "limit": 500}, History("d", 9, 500)),
        ({"type": "history", "room": "d", "limit": 1}, History("d", None, 1)),
        ({"type": "ping", "ref": 7}, Ping(ref=7)),
        ({"type": "quit", "reason": "bye"}, Quit(reason="bye")),
        ({"type": "quit", "reason": "q" * 4096}, Quit(reason="q" * 4096)),  # whole, not cut
        ({"type": "quit", "reason": ""}, Quit()),
        ({"type": "leave", "room": "dev", "reason": "later"}, Leave("dev", "later")),
        ({"type": "history", "room": "d", "before": 2**53}, History("d", 2**53)),
        (
            {"type": "hello", "name": "c", "since": {"lobby": 2**53}, "session": "t" * 256},
            Hello(name="c", since={"lobby": 2**53}, session="t" * 256),
        ),
        ({"type": "ping", "extra": [1, 2], "nested": {"x": 1}}, Ping()),  # unknown fields ignored
    ],
)
def test_parse_request(obj: dict, expected: object) -> None:
    assert req(obj) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{", ErrorCode.BAD_JSON),
        (b"{not json}", ErrorCode.BAD_JSON),
        (b"[1, 2]", ErrorCode.BAD_JSON),
        (b'"str"', ErrorCode.BAD_JSON),
        (b'{"type": "ping"} trailing', ErrorCode.BAD_JSON),
        (b'{"type": "say", "text": "\xff"}', ErrorCode.BAD_UTF8),
        (b'{"no": "type"}', ErrorCode.BAD_MESSAGE),
        (b'{"type": 5}', ErrorCode.BAD_MESSAGE),
        (b'{"type": "frobnicate"}', ErrorCode.UNKNOWN_TYPE),
        (b"[" * 100_000, ErrorCode.BAD_JSON),  # deep nesting must not crash
    ],
)
def test_parse_request_payload_errors(payload: bytes, code: ErrorCode) -> None:
    refused(payload, code)


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"type": "hello"}, ErrorCode.BAD_NAME),
        ({"type": "hello", "name": ""}, ErrorCode.BAD_NAME),
        ({"type": "hello", "name": "a b"}, ErrorCode.BAD_NAME),
        ({"type": "hello", "name": "x" * 33}, ErrorCode.BAD_NAME),
        ({"type": "hello", "name": 5}, ErrorCode.BAD_NAME),
        ({"type": "hello", "name": "a", "rooms": "lobby"}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "rooms": ["no space"]}, ErrorCode.BAD_ROOM),
        ({"type": "hello", "name": "a", "since": [1]}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "since": {"lobby": "x"}}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "proto": 0}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "proto": True}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "session": 5}, ErrorCode.BAD_MESSAGE),
        ({"type": "say"}, ErrorCode.BAD_TEXT),
        ({"type": "say", "text": ""}, ErrorCode.BAD_TEXT),
        ({"type": "say", "text": "a\x00b"}, ErrorCode.BAD_TEXT),
        ({"type": "say", "text": 5}, ErrorCode.BAD_TEXT),
        ({"type": "say", "text": "x" * 4097}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "say", "text": "é" * 2049}, ErrorCode.TEXT_TOO_LONG),  # bytes, not chars
        ({"type": "say", "text": "hi", "room": "a b"}, ErrorCode.BAD_ROOM),
        ({"type": "dm", "to": "bob"}, ErrorCode.BAD_TEXT),
        ({"type": "dm", "text": "hi"}, ErrorCode.BAD_NAME),
        ({"type": "join"}, ErrorCode.BAD_ROOM),
        ({"type": "join", "room": "#"}, ErrorCode.BAD_ROOM),
        ({"type": "join", "room": "x" * 33}, ErrorCode.BAD_ROOM),
        ({"type": "join", "room": "a.b"}, ErrorCode.BAD_ROOM),
        ({"type": "nick", "name": "a!"}, ErrorCode.BAD_NAME),
        ({"type": "history", "room": "d", "limit": 0}, ErrorCode.BAD_MESSAGE),
        ({"type": "history", "room": "d", "limit": 501}, ErrorCode.BAD_MESSAGE),
        ({"type": "history", "room": "d", "limit": "5"}, ErrorCode.BAD_MESSAGE),
        ({"type": "history", "room": "d", "before": 0}, ErrorCode.BAD_MESSAGE),
        ({"type": "ping", "ref": 1.5}, ErrorCode.BAD_MESSAGE),
        ({"type": "ping", "ref": "x" * 63}, ErrorCode.BAD_MESSAGE),
        ({"type": "ping", "ref": [1]}, ErrorCode.BAD_MESSAGE),
        ({"type": "quit", "reason": 5}, ErrorCode.BAD_MESSAGE),
        # Issue 12: ids are below 2^53; every free text is bounded like text.
        ({"type": "history", "room": "d", "before": 2**53 + 1}, ErrorCode.BAD_MESSAGE),
        ({"type": "history", "room": "d", "before": 2**63}, ErrorCode.BAD_MESSAGE),
        ({"type": "history", "room": "d", "before": 2**64 - 1}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "since": {"lobby": 2**63}}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "since": {"lobby": -1}}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "proto": 2**63}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "session": "s" * 257}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "password": "p" * 1025}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "name": "a", "password": 5}, ErrorCode.BAD_MESSAGE),
        ({"type": "leave", "reason": "x" * 65_000 + "\x00"}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "leave", "reason": "a\x00b"}, ErrorCode.BAD_TEXT),
        ({"type": "leave", "reason": 5}, ErrorCode.BAD_MESSAGE),
        ({"type": "quit", "reason": "x" * 4097}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "quit", "reason": "é" * 2049}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "quit", "reason": "a\x00b"}, ErrorCode.BAD_TEXT),
    ],
)
def test_parse_request_field_errors(obj: dict, code: ErrorCode) -> None:
    refused(obj, code)


def test_error_carries_the_ref() -> None:
    assert refused({"type": "say", "text": "", "ref": "r9"}, ErrorCode.BAD_TEXT).ref == "r9"
    assert refused({"type": "nope", "ref": 3}, ErrorCode.UNKNOWN_TYPE).ref == 3
    assert refused({"ref": "r"}, ErrorCode.BAD_MESSAGE).ref == "r"


def test_lone_surrogate_is_refused() -> None:
    # orjson refuses it as JSON, the stdlib parses it and check_text refuses it.
    with pytest.raises(ProtocolError) as info:
        parse_request(b'{"type": "say", "text": "\\ud800"}')
    assert info.value.code in (ErrorCode.BAD_JSON, ErrorCode.BAD_TEXT)


def test_max_text_is_a_parameter() -> None:
    assert parse_request(b'{"type":"say","text":"abcd"}', max_text=4) == Say(text="abcd")
    with pytest.raises(ProtocolError) as info:
        parse_request(b'{"type":"say","text":"abcde"}', max_text=4)
    assert info.value.code is ErrorCode.TEXT_TOO_LONG
    # ... and the bound of every other free text.
    assert parse_request(b'{"type":"quit","reason":"abcd"}', max_text=4) == Quit(reason="abcd")
    for payload in (b'{"type":"quit","reason":"abcde"}', b'{"type":"leave","reason":"abcde"}'):
        with pytest.raises(ProtocolError) as info:
            parse_request(payload, max_text=4)
        assert info.value.code is ErrorCode.TEXT_TOO_LONG


def test_an_out_of_range_id_error_carries_the_ref() -> None:
    error = refused({"type": "history", "before": 2**63, "ref": "h"}, ErrorCode.BAD_MESSAGE)
    assert error.ref == "h" and "before" in error.message


def test_tokens_must_be_valid_unicode() -> None:
    # The stdlib JSON codec lets a lone surrogate through; .encode() then raised
    # in the server's constant-time comparisons.
    with pytest.raises(ProtocolError) as info:
        check_token("\ud800", "session", 256)
    assert info.value.code is ErrorCode.BAD_MESSAGE
    assert check_token(None, "session", 256) is None
    assert check_token("t" * 256, "session", 256) == "t" * 256


# ---------------------------------------------------------------------------
# Field rules


@pytest.mark.parametrize("name", ["a", "x" * 32, "Zoë", "名前", "a_b-c.d[e]f{g}h^i|j", "123"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 33, "a b", "a#", "a/b", "a\x1b", "é\u200b", None])
def test_bad_names(name: object) -> None:
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code is ErrorCode.BAD_NAME


@pytest.mark.parametrize(
    ("room", "canonical"),
    [("lobby", "lobby"), ("#Dev", "dev"), ("a_b-c", "a_b-c"), ("#" + "x" * 32, "x" * 32)],
)
def test_good_rooms(room: str, canonical: str) -> None:
    assert check_room(room) == canonical


@pytest.mark.parametrize("room", ["", "#", "x" * 33, "a.b", "a b", "##a", 5, None])
def test_bad_rooms(room: object) -> None:
    with pytest.raises(ProtocolError) as info:
        check_room(room)
    assert info.value.code is ErrorCode.BAD_ROOM


def test_text_rules() -> None:
    assert check_text("a\x1b[31m\x07", 100) == "a\x1b[31m\x07"  # controls kept on the wire
    assert check_text("x" * 10, 10) == "x" * 10


def test_ref_rules() -> None:
    assert check_ref("x" * 62) == "x" * 62  # 64 bytes once quoted
    assert check_ref(10**63) == 10**63
    with pytest.raises(ProtocolError):
        check_ref(10**64)
    with pytest.raises(ProtocolError):
        check_ref(True)


def test_format_ts() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    base = calendar.timegm((2026, 11, 24, 10, 0, 0))
    assert format_ts(base + 0.1235) == "2026-11-24T10:00:00.123Z"
    assert format_ts(base + 0.9999) == "2026-11-24T10:00:00.999Z"
    assert format_ts(base + 1) == "2026-11-24T10:00:01.000Z"
    assert format_ts(base + 0.5) == "2026-11-24T10:00:00.500Z"


# ---------------------------------------------------------------------------
# Events

TS = "2026-11-24T10:00:00.123Z"
MSG = MsgEvent(id=1, ts=TS, room="lobby", from_="alice", text="hi")
EVENTS = [
    Welcome(
        name="a",
        proto=1,
        server="chatserver/0",
        rooms=["lobby"],
        limits={"max_frame": 65536, "max_text": 4096, "rate": 20, "burst": 40},
        session="tok",
        ref="r",
    ),
    MSG,
    MsgEvent(id=2, ts=TS, room="x", from_="b", text="waves", action=True, ref=5),
    DmEvent(id=3, ts=TS, from_="a", to="b", text="psst"),
    JoinEvent(room="lobby", name="a", ts=TS),
    LeaveEvent(room="lobby", name="a", ts=TS, reason="gone"),
    NickEvent(old="a", new="b", ts=TS),
    WhoReply(room="lobby", names=["a", "b"], ref="w"),
    RoomsReply(rooms=[RoomInfo("a", 1), RoomInfo("b", 2)]),
    HistoryReply(room="lobby", messages=[MSG], more=True),
    Pong(ts=TS, ref=1),
    ErrorEvent(code="bad_text", message="no", ref="e"),
    Bye(reason="quit"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_roundtrip(event: object) -> None:
    frame = encode(event)
    (payload,) = FrameDecoder().feed(frame)
    assert payload == encode_payload(event)
    assert parse_event(payload) == event


def test_event_wire_form() -> None:
    obj = json.loads(encode_payload(MSG))
    assert obj == {"type": "msg", "id": 1, "ts": TS, "room": "lobby", "from": "alice", "text": "hi"}
    rooms = json.loads(encode_payload(EVENTS[8]))
    assert rooms["rooms"] == [{"name": "a", "members": 1}, {"name": "b", "members": 2}]
    hist = json.loads(encode_payload(EVENTS[9]))
    assert hist["messages"][0]["from"] == "alice" and hist["more"] is True
    # Optional fields that are unset stay off the wire.
    assert "ref" not in json.loads(encode_payload(Pong(ts=TS)))


def test_request_encode_parse_roundtrip() -> None:
    for request in (
        Hello(name="a", rooms=("x", "y"), since={"x": 3}, session="s", ref=1),
        Say(text="hi", room="x", ref="r"),
        Dm(to="b", text="hi"),
        Join(room="x"),
        Leave(room="x", reason="r"),
        Nick(name="n"),
        Who(room="x"),
        Rooms(),
        History(room="x", before=4, limit=10),
        Ping(ref=2),
        Quit(reason="r"),
    ):
        assert parse_request(encode_payload(request)) == request


def test_parse_event_lenient_on_extra_fields() -> None:
    assert parse_event(b'{"type":"pong","ts":"t","future":1}') == Pong(ts="t")
    with pytest.raises(ProtocolError):
        parse_event(b'{"type":"nope"}')
    with pytest.raises(ProtocolError):
        parse_event(b'{"type":"msg"}')


@given(st.text(min_size=1, max_size=200).filter(lambda t: "\x00" not in t))
def test_text_roundtrip(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        return  # lone surrogates: tested above
    payload = encode_payload(Say(text=text))
    assert parse_request(payload) == Say(text=text)
    event = MsgEvent(id=1, ts=TS, room="r", from_="a", text=text)
    assert parse_event(encode_payload(event)) == event


def test_payload_is_compact_utf8() -> None:
    payload = encode_payload(Say(text="h\u00e9"))
    assert "h\u00e9".encode() in payload
    assert not re.search(rb", |: ", payload)
