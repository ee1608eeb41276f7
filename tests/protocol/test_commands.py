"""Input lines of plain-text and line-mode clients to requests (section 6)."""

from __future__ import annotations

import pytest

from chatserver.commands import HELP_LINES, ShowHelp, parse_line
from chatserver.protocol import (
    Dm,
    ErrorCode,
    History,
    Join,
    Leave,
    Nick,
    ProtocolError,
    Quit,
    Rooms,
    Say,
    Who,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello there", Say(text="hello there")),
        ("  indented", Say(text="  indented")),
        ("//slash", Say(text="/slash")),
        ("//", Say(text="/")),
        ("/join dev", Join(room="dev")),
        ("/join #Dev", Join(room="dev")),
        ("/JOIN dev extra", Join(room="dev")),
        ("/leave", Leave()),
        ("/leave dev", Leave(room="dev")),
        ("/leave #Dev gone  fishing ", Leave(room="dev", reason="gone  fishing")),
        ("/msg bob hi there", Dm(to="bob", text="hi there")),
        ("/me waves", Say(text="waves", action=True)),
        ("/nick zed", Nick(name="zed")),
        ("/who", Who()),
        ("/who dev", Who(room="dev")),
        ("/rooms", Rooms()),
        ("/history", History()),
        ("/history 5", History(limit=5)),
        ("/history 500", History(limit=500)),
        ("/help", ShowHelp()),
        ("/quit", Quit()),
        ("/quit gone fishing", Quit(reason="gone fishing")),
        ("{quit}", Quit()),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_line(line: str, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("/frobnicate", ErrorCode.UNKNOWN_COMMAND),
        ("/join", ErrorCode.BAD_MESSAGE),
        ("/join a.b", ErrorCode.BAD_ROOM),
        ("/msg", ErrorCode.BAD_MESSAGE),
        ("/msg bob", ErrorCode.BAD_MESSAGE),
        ("/msg b@d hi", ErrorCode.BAD_NAME),
        ("/me", ErrorCode.BAD_MESSAGE),
        ("/nick", ErrorCode.BAD_MESSAGE),
        ("/nick two words", ErrorCode.BAD_NAME),
        ("/history 0", ErrorCode.BAD_MESSAGE),
        ("/history 501", ErrorCode.BAD_MESSAGE),
        ("/history x", ErrorCode.BAD_MESSAGE),
        ("nul\x00inside", ErrorCode.BAD_TEXT),
        ("/history \u00b2", ErrorCode.BAD_MESSAGE),  # isdigit(), yet int() refuses it
        ("/history " + "9" * 5000, ErrorCode.BAD_MESSAGE),  # int() refuses 4 301 digits
        ("/quit " + "x" * 4097, ErrorCode.TEXT_TOO_LONG),  # was cut to 200 characters
        ("/quit a\x00b", ErrorCode.BAD_TEXT),
        ("/leave dev " + "x" * 4097, ErrorCode.TEXT_TOO_LONG),
        ("/leave dev a\x00b", ErrorCode.BAD_TEXT),
    ],
)
def test_parse_line_errors(line: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert info.value.code is code


def test_text_too_long() -> None:
    assert parse_line("abcd", max_text=4) == Say(text="abcd")
    assert parse_line("/quit abcd", max_text=4) == Quit(reason="abcd")
    for line in ("abcde", "/quit abcde", "/leave dev abcde"):
        with pytest.raises(ProtocolError) as info:
            parse_line(line, max_text=4)
        assert info.value.code is ErrorCode.TEXT_TOO_LONG


def test_help_lists_every_command_of_the_contract() -> None:
    text = "\n".join(HELP_LINES)
    for command in (
        "join",
        "leave",
        "msg",
        "me",
        "nick",
        "who",
        "rooms",
        "history",
        "help",
        "quit",
    ):
        assert f"/{command}" in text
