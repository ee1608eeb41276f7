"""Terminal injection: controls and escapes from others arrive escaped, never raw."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.client.test_tui_pty import Terminal
from tests.helpers import Client, LineClient, ProcessServer
from tests.security.conftest import Bystanders

pytestmark = pytest.mark.timeout(30)

C0 = "".join(chr(c) for c in range(0x20) if c not in (0x00, 0x0A, 0x0D)) + "\x7f"
C1 = "".join(chr(c) for c in range(0x80, 0xA0))
SEQUENCES = (
    "\x1b[2J\x1b[H",  # CSI: clear screen, cursor home
    "\x1b[31mred",  # CSI SGR colour that would bleed
    "\x1b]0;pwned\x07",  # OSC: window title
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x9b2J",  # 8-bit CSI
    "\u202eevil\u202c \u2066iso\u2069 \u200f",  # bidi override, isolate, RLM
    "a\u2028b\u2029c",  # line and paragraph separators
)
PAYLOADS = (C0, C1, *SEQUENCES)
FORBIDDEN = set(C0 + C1 + "\x0a\x0d\u202e\u202c\u2066\u2069\u200f\u2028\u2029")


def _raw_free(line: bytes) -> str:
    text = line.decode().rstrip("\r\n")
    assert not (set(text) & FORBIDDEN), ascii(text)
    return text


def test_text_with_controls_arrives_escaped(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server("--msg-rate", "0")
    users = bystanders(server.port)
    baseline = users.baseline()
    line = LineClient(server.port)
    line.send(b"liner\n")
    line.expect("liner joined lobby")
    framed = Client(server.port)
    framed.send_frame(b"framer")  # framed plain text: the first frame is the name
    users.alice.expect("join", name="framer")
    for i, payload in enumerate(PAYLOADS):
        text = f"m{i}<{payload}>"
        users.alice.send({"type": "say", "text": text})
        assert users.bob.expect("msg", text=text)["text"] == text  # JSON: kept verbatim
        got = _raw_free(line.expect(f"m{i}<").encode())
        assert "<alice>" in got and "\\" in got, got
        while True:
            frame = framed.recv_payload()
            if f"m{i}<".encode() in frame:
                break
        assert "\\" in _raw_free(frame), frame
    users.assert_unhurt(baseline)
    line.close()
    framed.close()


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_names_and_rooms_with_controls_are_refused(
    payload: str, start_server: Callable[..., ProcessServer]
) -> None:
    server = start_server()
    c = Client(server.port)
    c.send({"type": "hello", "name": f"x{payload}"})
    events = c.wait_closed()
    assert events[-1]["type"] == "error" and events[-1]["code"] == "bad_name", events
    c = Client(server.port)
    c.hello("roomer")
    c.send({"type": "join", "room": f"r{payload}", "ref": 1})
    err = c.expect("error")
    assert err["code"] == "bad_room" and err["ref"] == 1, err


def test_tui_screen_shows_escapes_and_keeps_its_state(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    server = start_server("--msg-rate", "0")
    users = bystanders(server.port)
    baseline = users.baseline()
    term = Terminal("--name", "viewer", "--port", str(server.port), "--no-bell")
    try:
        term.wait(lambda s: "[online]" in s, "the app online")
        title = term.screen.title
        hostile = "T<\x1b]0;pwned\x07\x1b[31mred\x1b[2J\u202eevil>"
        users.alice.send({"type": "say", "text": hostile})
        users.alice.send({"type": "say", "text": "after"})
        screen = term.wait(lambda s: "after" in s, "the message after")
        assert "<alice> after" in screen
        assert "\\e]0;pwned" in screen and "\\e[31mred" in screen, screen
        assert "\\u202e" in screen or "\\u202E" in screen, screen
        assert term.screen.title == title  # no OSC title change
        # No colour bled: the cells of "after" have the default foreground.
        row = next(y for y, line in enumerate(term.screen.display) if "<alice> after" in line)
        col = term.screen.display[row].index("after")
        assert term.screen.buffer[row][col].fg == "default"
        assert "viewer" in term.screen.display[-1] or "[online]" in term.text()  # not cleared
        users.assert_unhurt(baseline)
    finally:
        if term.child.isalive():
            term.child.kill(9)
