"""Rendered lines (section 6) and the escaping of control characters."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatserver.protocol import (
    Bye,
    DmEvent,
    ErrorEvent,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Pong,
    RoomInfo,
    RoomsReply,
    Welcome,
    WhoReply,
)
from chatserver.render import escape, render

TS = "2026-11-24T10:00:01.123Z"


@pytest.mark.parametrize(
    ("event", "me", "lines"),
    [
        (MsgEvent(1, TS, "lobby", "alice", "hello"), "", ["10:00:01 [lobby] <alice> hello"]),
        (
            MsgEvent(1, TS, "lobby", "alice", "waves", action=True),
            "",
            ["10:00:01 [lobby] * alice waves"],
        ),
        (DmEvent(1, TS, "alice", "bob", "hi"), "alice", ["10:00:01 -> bob: hi"]),
        (DmEvent(1, TS, "alice", "bob", "hi"), "BOB", ["10:00:01 <- alice: hi"]),
        (DmEvent(1, TS, "a", "b", "nods", action=True), "b", ["10:00:01 <- a: * a nods"]),
        (JoinEvent("lobby", "bob", TS), "", ["10:00:01 -- bob joined lobby"]),
        (LeaveEvent("lobby", "bob", TS), "", ["10:00:01 -- bob left lobby"]),
        (LeaveEvent("lobby", "bob", TS, "tired"), "", ["10:00:01 -- bob left lobby (tired)"]),
        (NickEvent("bob", "rob", TS), "", ["10:00:01 -- bob is now known as rob"]),
        (WhoReply("lobby", ["a", "b"]), "", ["NOW -- lobby: a b"]),
        (WhoReply("lobby", []), "", ["NOW -- lobby: (nobody)"]),
        (RoomsReply([RoomInfo("a", 1), RoomInfo("b", 2)]), "", ["NOW -- rooms: a (1), b (2)"]),
        (RoomsReply([]), "", ["NOW -- rooms: none"]),
        (Pong(ts=TS), "", ["10:00:01 -- pong"]),
        (
            ErrorEvent("no_such_user", "nobody called carol"),
            "",
            ["NOW !! no_such_user: nobody called carol"],
        ),
        (Bye("quit"), "", ["NOW -- bye (quit)"]),
        (
            HistoryReply("lobby", [MsgEvent(1, TS, "lobby", "a", "x")] * 2, False),
            "",
            ["10:00:01 [lobby] <a> x"] * 2,
        ),
        (HistoryReply("lobby", [], False), "", []),
        (
            HistoryReply("lobby", [MsgEvent(1, TS, "lobby", "a", "x")], False, gap=True),
            "",
            ["NOW -- lobby: some messages may be missing", "10:00:01 [lobby] <a> x"],
        ),
    ],
)
def test_render(event: object, me: str, lines: list[str]) -> None:
    got = render(event, me)
    assert len(got) == len(lines), got
    for line, want in zip(got, lines, strict=True):
        if want.startswith("NOW "):  # an event without ts is stamped with the current time
            assert re.fullmatch(r"\d\d:\d\d:\d\d", line[:8]), line
            line, want = line[8:], want[3:]
        assert line == want


def test_welcome_with_motd_escaped() -> None:
    lines = render(Welcome("a", 1, "s", ["lobby"], {}, motd="hi\x1b[2J"))
    assert "welcome, a" in lines[0] and "lobby" in lines[0]
    assert lines[1].endswith("hi\\e[2J")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text é 名前 😀", "plain text é 名前 😀"),
        ("\x1b[31mred", "\\e[31mred"),
        ("bell\x07", "bell\\x07"),
        ("a\tb\r\nc", "a\\tb\\r\\nc"),
        ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
        ("\x85nel", "\\x85nel"),
        ("del\x7f", "del\\x7f"),
        ("\u202etxet", "\\u202etxet"),  # right-to-left override
        ("a\u2028b", "a\\u2028b"),
        ("zero\u200bwidth", "zero\\u{200b}width"),  # invisible: it could hide a word
        ("\U0001f468\u200d\U0001f469", "\U0001f468\u200d\U0001f469"),  # a joined emoji
        ("\u0645\u06cc\u200c\u062e", "\u0645\u06cc\u200c\u062e"),  # Persian's non-joiner
        ("soft\u00adhyphen", "soft\u00adhyphen"),
        ("\U0001f3f4\U000e0067\U000e0062\U000e007f", "\U0001f3f4\U000e0067\U000e0062\U000e007f"),
    ],
)
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def test_other_users_text_is_escaped_in_every_event() -> None:
    evil = "x\x1b]0;pwned\x07\x9b"
    for event in (
        MsgEvent(1, TS, "r", "a", evil),
        MsgEvent(1, TS, "r", "a", evil, action=True),
        DmEvent(1, TS, "a", "b", evil),
        LeaveEvent("r", "a", TS, evil),
        ErrorEvent("bad_text", evil),
    ):
        (line,) = render(event, "b")
        assert "\x1b" not in line and "\x07" not in line and "\x9b" not in line, line


@given(st.text())
def test_escaped_text_has_no_controls(text: str) -> None:
    out = escape(text)
    assert all(not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in out)
    assert "\u202e" not in out
