"""Escape sequences from the network never reach the real terminal client's screen raw."""

from __future__ import annotations

from collections.abc import Callable

from tests.client.test_tui_pty import Terminal
from tests.helpers import Client, ThreadServer
from tests.security.test_attacks import CONTROLS, SEQUENCES


def test_the_tui_shows_escapes_and_obeys_none(
    server: ThreadServer, connect: Callable[..., Client]
) -> None:
    mallory = connect("mallory")
    term = Terminal("--name", "alice", "--port", str(server.port), "--no-bell")
    try:
        term.wait(lambda s: "[online]" in s and "mallory" in term.members(), "the app online")
        mallory.send({"type": "say", "text": "before the attack"})
        term.wait(lambda s: "before the attack" in s, "the first line")
        texts = [*SEQUENCES, f"ctl{CONTROLS[:31]}end", f"c1{CONTROLS[31:]}end"]
        for i, text in enumerate(texts):
            mallory.send({"type": "say", "text": f"#{i}{text}"})
        screen = term.wait(lambda s: f"#{len(texts) - 1}c1" in s, "every attack line")
        # Shown escaped...
        assert "#0\\e[2J\\e[H" in screen, screen
        assert "#1\\e]0;pwned" in screen, screen
        assert "#2\\e[31mred" in screen, screen
        assert "#3\\e[6n" in screen, screen
        # ...and obeyed never: nothing cleared, no title, no colour, no reply.
        assert "before the attack" in screen
        assert "pwned" not in term.screen.title
        row, line = next(
            (r, line) for r, line in enumerate(term.screen.display) if "#2\\e[31mred" in line
        )
        start = line.index("#2\\e[31mred") + len("#2\\e[31m")
        cells = [term.screen.buffer[row][x] for x in range(start, start + 3)]
        assert "".join(c.data for c in cells) == "red"
        assert all(c.fg != "red" for c in cells), cells
        for line in term.screen.display:
            assert all(ch.isprintable() for ch in line), repr(line)
        assert "\u202e" not in screen and "\u2066" not in screen
        term.child.send("/quit\r")
        term.child.expect("\x1b", timeout=5)  # the app restores the screen and ends
    finally:
        if term.child.isalive():
            term.child.kill(9)
