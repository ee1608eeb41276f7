"""Fuzzing the parsers with hypothesis: hostile input yields typed errors, never a crash.

Bounded (a few hundred examples each) so the suite stays fast; run with
``--hypothesis-seed`` or a bigger ``max_examples`` locally to dig deeper.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatserver.commands import parse_line
from chatserver.protocol import (
    FrameDecoder,
    LineDecoder,
    ProtocolError,
    parse_event,
    parse_request,
)
from chatserver.render import SHAPING, render

REQUEST_TYPES = ["hello", "say", "dm", "join", "leave", "nick", "who", "rooms", "history"]
REQUEST_TYPES += ["ping", "quit"]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_LINE_RESULTS = {"Say", "Dm", "Join", "Leave", "Nick", "Who", "Rooms", "History", "Quit"}
KNOWN_LINE_RESULTS |= {"Ping", "ShowHelp"}

# Bytes that look like the protocol often enough to reach the deep branches.
header = st.one_of(
    st.integers(0, 10**10).map(lambda n: str(n).encode()[:10].ljust(10)),
    st.binary(min_size=10, max_size=10),
)
frame_ish = st.tuples(header, st.binary(max_size=200)).map(lambda t: t[0] + t[1])
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
request_ish = st.fixed_dictionaries(
    {"type": st.sampled_from([*REQUEST_TYPES, "msg", "x"])},
    optional={
        k: json_value
        for k in ["name", "text", "room", "to", "ref", "rooms", "since", "before", "limit"]
    },
)


@FUZZ
@given(st.lists(st.one_of(frame_ish, st.binary(max_size=64)), max_size=12))
def test_frame_decoder_never_raises(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame=1024)
    for chunk in chunks:
        for payload in decoder.feed(chunk):
            assert len(payload) <= 1024
        if decoder.error is not None:
            assert isinstance(decoder.error, ProtocolError)
            assert decoder.feed(b"more") == []  # dead after a fatal error


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_line_decoder_never_raises(chunks: list[bytes]) -> None:
    decoder = LineDecoder(max_line=256)
    for chunk in chunks:
        for line in decoder.feed(chunk):
            assert b"\n" not in line and len(line) <= 256


@FUZZ
@given(st.one_of(st.binary(max_size=300), request_ish.map(lambda d: json.dumps(d).encode())))
def test_request_validator_raises_only_protocol_errors(payload: bytes) -> None:
    try:
        request = parse_request(payload, 4096)
    except ProtocolError as exc:
        assert exc.code.value and exc.message
        return
    # Accepted: a typed request of the type the payload named.
    assert type(request).__name__.lower() == json.loads(payload)["type"]


@FUZZ
@given(st.text(max_size=300))
def test_input_line_parser_raises_only_protocol_errors(line: str) -> None:
    try:
        request = parse_line(line, 4096)
    except ProtocolError as exc:
        assert exc.code.value and exc.message
        return
    assert request is None or type(request).__name__ in KNOWN_LINE_RESULTS


@FUZZ
@given(request_ish)
def test_rendered_lines_are_always_printable(obj: dict) -> None:
    # Any event the server could send, from any field values: one printable line.
    obj = {**obj, "type": "msg", "id": 1, "ts": "2026-11-24T10:00:00.000Z"}
    obj.setdefault("room", "lobby")
    obj.setdefault("from", obj.get("name", "x"))
    obj.setdefault("text", "t")
    try:
        event = parse_event(json.dumps(obj).encode())
    except (ProtocolError, KeyError, TypeError, ValueError):
        return
    for line in render(event):
        # Printable, but for the joiners and soft hyphens that only shape their neighbours.
        assert all(ch.isprintable() or ch in SHAPING for ch in line), repr(line)
