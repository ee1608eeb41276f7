"""The real full-screen client in a pseudo-terminal, read back through a terminal emulator."""

from __future__ import annotations

from collections.abc import Callable

import pexpect

from tests.client.terminal import Terminal
from tests.helpers import Client, ThreadServer


def test_full_screen_chat_in_a_terminal(
    server: ThreadServer, connect: Callable[..., Client]
) -> None:
    bob = connect("bob")
    term = Terminal("--name", "alice", "--port", str(server.port), "--no-bell")
    try:
        term.wait(lambda s: "[online]" in s and "bob" in term.members(), "the app online")
        assert "alice" in term.members()
        assert "1:lobby" in term.screen.display[0]

        term.child.send("hello from the terminal\r")
        assert bob.expect("msg", text="hello from the terminal")["from"] == "alice"
        bob.send({"type": "say", "text": "hi alice \x1b[31mred"})
        screen = term.wait(lambda s: "hi alice" in s, "bob's reply")
        assert "<bob> hi alice \\e[31mred" in screen  # the escape is shown, not obeyed
        assert "<alice> hello from the terminal" in screen

        carol = connect("carol")
        term.wait(lambda s: "carol" in term.members(), "carol in the member list")
        carol.send({"type": "quit"})
        term.wait(lambda s: "carol" not in term.members(), "carol gone from the list")
        assert "carol left lobby" in term.text()

        term.child.send("\x1bOQ")  # F2 hides the member list
        term.wait(lambda s: not term.members(), "the member list hidden")

        term.child.send("/quit\r")
        term.child.expect(pexpect.EOF, timeout=5)
        term.child.close()
        assert term.child.exitstatus == 0
    finally:
        if term.child.isalive():
            term.child.kill(9)
