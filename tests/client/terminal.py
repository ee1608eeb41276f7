"""The real full-screen client in a pseudo-terminal, read back through a terminal emulator."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte

from tests.client.conftest import ROOT

KEYS = {
    "enter": "\r",
    "pageup": "\x1b[5~",
    "pagedown": "\x1b[6~",
    "end": "\x1b[F",
    "home": "\x1b[H",
    "alt-end": "\x1b\x1b[F",
    "f2": "\x1bOQ",
    "f12": "\x1b[24~",
    "ctrl-c": "\x03",
    "ctrl-r": "\x12",
    "ctrl-u": "\x15",
    "tab": "\t",
    "esc": "\x1b",
}


class Terminal:
    """``python -m chatclient`` in a pty whose output feeds a pyte screen.

    Its home is a fresh directory, so config, logs and input history are its own.
    """

    def __init__(self, *args: str, rows: int = 24, cols: int = 100, home: Path | None = None):
        self.home = home or Path(tempfile.mkdtemp(prefix="chat-term-"))
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()  # everything the client wrote, for escapes pyte drops
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "PYTHONPATH": str(ROOT),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local/share"),
            "XDG_STATE_HOME": str(self.home / ".local/state"),
        }
        env.pop("TMUX", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "chatclient", *args],
            dimensions=(rows, cols),
            env=env,
            cwd=str(ROOT),
        )

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def rows(self) -> list[str]:
        return list(self.screen.display)

    def pump(self, timeout: float = 0.05) -> None:
        try:
            data = self.child.read_nonblocking(1 << 16, timeout=timeout)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            raise AssertionError(f"client exited:\n{self.text()}") from None
        self.raw += data
        self.stream.feed(data)

    def wait(self, check: Callable[[str], object], what: str, timeout: float = 8.0) -> str:
        """Feed output into the screen until check(screen text) holds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {what}:\n{screen}")
            self.pump(0.05)

    def settle(self, quiet: float = 0.3, timeout: float = 8.0) -> str:
        """Wait until the client has drawn everything (no output for ``quiet`` s)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            before = len(self.raw)
            self.pump(0.05)
            if len(self.raw) != before:
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
        return self.text()

    def send(self, *keys: str) -> None:
        for key in keys:
            self.child.send(KEYS.get(key, key))

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def messages(self) -> list[str]:
        """The message area's rows: between the tab bar and the status bar, member list cut off."""
        out = []
        for row in self.rows()[1:-2]:
            out.append(row.rsplit("│", 1)[0] if "│" in row else row)
        return out

    def numbers(self, pattern: str = r"message (\d+)\b") -> list[int]:
        """The message numbers in view, top to bottom."""
        found: list[int] = []
        for row in self.messages():
            found.extend(int(m) for m in re.findall(pattern, row))
        return found

    def members(self) -> list[str]:
        """The member list column (right of the divider) of the message area."""
        column = []
        for row in self.rows()[1:-2]:
            if "│" in row:
                name = row.rsplit("│", 1)[1].strip()
                if name:
                    column.append(name)
        return column

    def status(self) -> str:
        return self.rows()[-2]

    def quit(self) -> int:
        self.send("/quit\r")
        self.child.expect(pexpect.EOF, timeout=5)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(9)
        self.child.close()
