"""Line-mode (netcat/telnet) and framed plain-text clients, end to end (section 6)."""

from __future__ import annotations

import re

import pytest

from chatserver.commands import HELP_LINES
from tests.helpers import Client, LineClient
from tests.server.support import assert_alive, assert_room_carries_on

FROM_CAROL = {"from": "carol"}
CLOCK = r"^\d\d:\d\d:\d\d "
TELNET_PREFIX = (
    b"\xff\xfd\x03"  # IAC DO SUPPRESS-GO-AHEAD
    b"\xff\xfb\x18"  # IAC WILL TERMINAL-TYPE
    b"\xff\xfb\x1f"  # IAC WILL NAWS
    b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"  # IAC SB NAWS 80x24 IAC SE
)


@pytest.fixture
def line_client(server):
    clients: list[LineClient] = []

    def factory(first: bytes) -> LineClient:
        client = LineClient(server.port)
        clients.append(client)
        client.send(first)
        return client

    yield factory
    for client in clients:
        client.close()


def _read_to_eof(client: LineClient) -> bytes:
    data = client.buf
    client.sock.settimeout(5)
    while chunk := client.sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_line_mode_session(connect, line_client, eol):
    alice = connect("alice")
    nc = line_client(TELNET_PREFIX + b"carol" + eol)
    ending = eol.decode()

    def line(pattern: str) -> str:
        got = nc.expect(pattern.replace("$", r"\r?$"))  # `$` matches before LF only
        assert got.endswith(ending) and (ending == "\r\n" or not got.endswith("\r\n")), got
        assert re.match(CLOCK, got), got
        return got

    line(r"welcome, carol! you are in lobby")
    line(r"-- carol joined lobby")
    alice.expect("join", name="carol")

    # Plain text and //text are said to the current room.
    nc.send(b"hello all" + eol)
    assert alice.expect("msg", **FROM_CAROL)["text"] == "hello all"
    line(r"\[lobby\] <carol> hello all$")
    nc.send(b"//etc/passwd is a path" + eol)
    assert alice.expect("msg", **FROM_CAROL)["text"] == "/etc/passwd is a path"
    line(r"<carol> /etc/passwd is a path")

    # Messages from others, with an ANSI escape and a C1 control, arrive escaped.
    alice.send({"type": "say", "text": "red \x1b[31mtext\x1b[0m c1 \x9b2J bell\x07"})
    got = line(r"<alice>")
    assert got.rstrip("\r\n").endswith(r"red \e[31mtext\e[0m c1 \x9b2J bell\x07")
    assert "\x1b" not in got and "\x9b" not in got and "\x07" not in got

    nc.send(b"/me waves" + eol)
    assert alice.expect("msg", **FROM_CAROL) | {"ts": 0, "id": 0} == {
        "type": "msg", "id": 0, "ts": 0, "room": "lobby", "from": "carol", "text": "waves",
        "action": True,
    }  # fmt: skip
    line(r"\[lobby\] \* carol waves$")

    nc.send(b"/msg alice psst" + eol)
    assert alice.expect("dm", **FROM_CAROL)["text"] == "psst"
    line(r"-> alice: psst$")
    alice.send({"type": "dm", "to": "carol", "text": "back \x1b]0;x\x07"})
    line(r"<- alice: back \\e\]0;x\\x07$")

    nc.send(b"/join dev" + eol)
    line(r"-- carol joined dev$")
    nc.send(b"in dev" + eol)
    line(r"\[dev\] <carol> in dev$")
    nc.send(b"/who" + eol)
    line(r"-- dev: carol$")
    nc.send(b"/who lobby" + eol)
    line(r"-- lobby: alice carol$")
    nc.send(b"/rooms" + eol)
    line(r"-- rooms: dev \(1\), lobby \(2\)$")
    nc.send(b"/history 1" + eol)
    line(r"\[dev\] <carol> in dev$")
    nc.send(b"/history" + eol)
    line(r"\[dev\] <carol> in dev$")

    nc.send(b"/help" + eol)
    for help_line in HELP_LINES:
        assert nc.readline() == help_line.encode() + eol

    nc.send(b"/frobnicate" + eol)
    line(r"!! unknown_command: ")
    nc.send(b"/msg nobody hi" + eol)
    line(r"!! no_such_user: nobody called nobody$")
    nc.send(b"/join" + eol)
    line(r"!! bad_message: usage: /join ROOM")
    nc.send(b"nul \x00 inside" + eol)
    line(r"!! bad_text: ")
    nc.send(b"bad \xc3( utf8" + eol)  # (0xff would be a telnet IAC, dropped)
    line(r"!! bad_utf8: ")
    nc.send(b"" + eol)  # a blank line says nothing

    nc.send(b"/nick carla" + eol)
    line(r"-- carol is now known as carla$")
    assert alice.expect("nick") | {"ts": 0} == {"type": "nick", "old": "carol", "new": "carla",
                                                 "ts": 0}  # fmt: skip
    nc.send(b"/nick alice" + eol)
    line(r"!! name_taken: ")

    nc.send(b"/leave" + eol)
    line(r"-- carla left dev$")
    nc.send(b"/leave lobby" + eol)
    line(r"-- carla left lobby$")
    assert alice.expect("leave")["name"] == "carla"
    nc.send(b"/join lobby" + eol)
    line(r"-- carla joined lobby$")

    nc.send(b"/quit see you" + eol)
    rest = _read_to_eof(nc)
    assert re.search(rb"-- bye \(quit\)" + eol + rb"$", rest), rest
    leave = alice.expect("leave", name="carla")
    assert leave["reason"] == "see you"
    assert_alive(alice)


def test_line_mode_brace_quit(connect, line_client):
    alice = connect("alice")
    nc = line_client(b"dave\n")
    nc.expect(r"welcome, dave")
    nc.send(b"{quit}\n")
    assert _read_to_eof(nc).endswith(b"-- bye (quit)\n")
    assert alice.expect("leave", name="dave")["reason"] == "quit"


def test_line_mode_nothing_before_the_name(line_client):
    nc = line_client(TELNET_PREFIX)
    nc.send(b"\r\n\r\n")  # telnet's stray blank lines before the name
    nc.send(b"eve\r\n")
    assert "welcome, eve" in nc.readline().decode()  # the very first line


def test_line_mode_bad_name(witnesses, line_client):
    bob, carol = witnesses
    nc = line_client(b"no spaces allowed\n")
    data = _read_to_eof(nc)
    assert re.fullmatch(rb"\d\d:\d\d:\d\d !! bad_name: [^\n]+\n", data), data
    nc2 = line_client(b"BOB\r\n")
    assert b"!! name_taken: " in _read_to_eof(nc2)
    assert_room_carries_on(bob, carol)


def test_line_too_long(make_server):
    srv = make_server(max_frame=100, msg_rate=0)
    nc = LineClient(srv.port)
    try:
        nc.send(b"frank\n")
        nc.expect("welcome")
        nc.send(b"x" * 200)
        data = _read_to_eof(nc)
        assert b"!! frame_too_large: " in data and data.endswith(b"-- bye (protocol_error)\n")
    finally:
        nc.close()


def test_line_partial_timeout(make_server):
    srv = make_server(frame_timeout=0.3, msg_rate=0)
    nc = LineClient(srv.port)
    try:
        nc.send(b"gina\nhalf a li")
        assert _read_to_eof(nc).endswith(b"-- bye (idle)\n")
    finally:
        nc.close()


def test_framed_plain_text(connect, server):
    alice = connect("alice")
    text = Client(server.port)
    try:
        text.send_frame(b"erin")  # the first frame is the name
        first = text.recv_payload().decode()
        assert re.match(CLOCK + r"-- welcome, erin! you are in lobby", first), first
        # One frame per rendered event, no line ends.
        assert text.recv_payload().decode().endswith("-- erin joined lobby")
        alice.expect("join", name="erin")
        alice.send({"type": "say", "text": "hi \x1b[2J\x9b"})
        got = text.recv_payload().decode()
        assert re.fullmatch(CLOCK + r"\[lobby\] <alice> hi \\e\[2J\\x9b", got), got
        text.send_frame(b"hello alice")
        assert alice.expect("msg", text="hello alice")["from"] == "erin"
        assert text.recv_payload().decode().endswith("[lobby] <erin> hello alice")
        text.send_frame(b"/who")
        assert text.recv_payload().decode().endswith("-- lobby: alice erin")
        text.send_frame(b"/msg alice hey")
        assert text.recv_payload().decode().endswith("-> alice: hey")
        assert alice.expect("dm")["from"] == "erin"
        text.send_frame(b"/help")
        assert [text.recv_payload().decode() for _ in HELP_LINES] == list(HELP_LINES)
        text.send_frame(b"")  # a keepalive
        text.send_frame(b"/nope")
        assert "!! unknown_command: " in text.recv_payload().decode()
        text.send_frame(b"{quit}")
        frames = []
        while True:
            try:
                frames.append(text.recv_payload().decode())
            except AssertionError:
                break
        assert text.eof and frames[-1].endswith("-- bye (quit)"), frames
        assert alice.expect("leave", name="erin")
        assert_alive(alice)
    finally:
        text.close()
