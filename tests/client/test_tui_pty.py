"""The real full-screen client in a pseudo-terminal, read back through a terminal emulator."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pexpect
import pyte

from tests.client.conftest import ROOT
from tests.helpers import Client, ThreadServer

ROWS, COLS = 24, 100


class Terminal:
    """``python -m chatclient`` in a pty whose output feeds a pyte screen."""

    def __init__(self, *args: str) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "chatclient", *args],
            dimensions=(ROWS, COLS),
            env=env,
            cwd=str(ROOT),
        )

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait(self, check: Callable[[str], bool], what: str, timeout: float = 8.0) -> str:
        """Feed output into the screen until check(screen text) holds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {what}:\n{screen}")
            try:
                self.stream.feed(self.child.read_nonblocking(1 << 16, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                raise AssertionError(f"client exited before {what}:\n{screen}") from None

    def members(self) -> list[str]:
        """The member list column (right of the divider) of the message area."""
        column = []
        for row in self.screen.display[1:-2]:
            if "│" in row:
                name = row.rsplit("│", 1)[1].strip()
                if name:
                    column.append(name)
        return column


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
