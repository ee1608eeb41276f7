"""The client under test in a pseudo-terminal, and what its output shows.

The output is read raw on a thread and never fed through a terminal emulator
(too slow to keep up with a busy client): escape sequences are stripped and
the text left is searched for two kinds of characters that nothing else on
the screen uses:

- typed keys, uppercase ``A``-``M``: the echo of a key is its letter turning up
  in the output after it was written;
- tags, four letters of ``N``-``X`` at the start of some messages' text: a tag
  turning up means the client drew that message.

The renderer (prompt_toolkit's) only writes the cells that changed since its
last frame, so a letter already shown in the same cell is not written again.
Keys therefore rotate through their alphabet (no letter repeats within a run
of 13, and each cell gets a different letter in the next run), and tags are
numbered so that consecutive tags differ in every letter (:func:`tag`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pexpect

KEYS = b"ABCDEFGHIJKLM"
TAG_LETTERS = b"NOPQRSTUVWX"  # 11, a prime: see tag()
TAG_LEN = 4
MAX_TAG = len(TAG_LETTERS) ** TAG_LEN
CTRL_U = b"\x15"
ALT_1 = b"\x1b1"

# One escape sequence: CSI, OSC, DCS/SOS/PM/APC strings, charset designations,
# other two-byte escapes. '[', ']', 'P', 'X', '^', '_' are left out of the
# two-byte form so that a CSI cut by the end of a read never matches as one.
_ESC = re.compile(
    rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\"
    rb"|[()*+][ -~]|[ -/]*[0-OQ-WYZ\\`-~])"
)
_TAG_RUN = re.compile(rb"[N-X]+")
_TAIL = 8  # bytes of text kept from the last read: a tag may be cut in two


def tag(n: int) -> str:
    """The tag of number ``n``: letter 0 is n mod 11, letter j > 0 (n // 11**j + n) mod 11.

    Consecutive numbers differ in every letter (letter j moves by 1 or 2), so a
    tag drawn where the previous frame had the one before it is written whole.
    """
    if not 0 <= n < MAX_TAG:
        raise ValueError(f"tag number {n} out of range")
    base = len(TAG_LETTERS)
    digits = [n % base] + [(n // base**j + n) % base for j in range(1, TAG_LEN)]
    return "".join(chr(TAG_LETTERS[d]) for d in digits)


def untag(text: bytes) -> int | None:
    """The number of a tag (None for any other run of tag letters)."""
    if len(text) != TAG_LEN:
        return None
    base = len(TAG_LETTERS)
    digits = [TAG_LETTERS.index(c) for c in text]
    n = sum(((d - digits[0]) % base if j else d) * base**j for j, d in enumerate(digits))
    return n if tag(n).encode() == text else None


def key_letter(run: int, pos: int) -> bytes:
    """The letter typed at ``pos`` of the ``run``-th line of input."""
    return KEYS[(pos + run) % len(KEYS) : (pos + run) % len(KEYS) + 1]


class Scanner:
    """Raw output in, printable text out, escape sequences cut across reads included."""

    def __init__(self) -> None:
        self._carry = b""  # an escape sequence begun at the end of the last read
        self._tail = b""

    def feed(self, data: bytes) -> tuple[bytes, list[int]]:
        """The text of ``data`` and the tag numbers in it (or completed by it)."""
        data = self._carry + data
        self._carry = b""
        last = data.rfind(b"\x1b")
        if last >= 0:
            match = _ESC.match(data, last)
            if match is None or match.end() == len(data):
                # Possibly incomplete: decide once the rest has come.
                self._carry, data = data[last:], data[:last]
                if len(self._carry) > 4096:  # not an escape we know: give up on it
                    self._carry = b""
        text = _ESC.sub(b"", data)
        runs = _TAG_RUN.findall(self._tail + text)
        self._tail = text[-_TAIL:]
        tags = [n for r in runs if (n := untag(r)) is not None]
        return text, tags


def client_pythonpath(client_path: Path) -> str:
    """The client's checkout first (the cwd is it too: -m puts the cwd before PYTHONPATH)."""
    return os.pathsep.join(p for p in (str(client_path), os.environ.get("PYTHONPATH", "")) if p)


@dataclass
class Key:
    letter: bytes
    sent: float  # perf_counter() just before the write to the pty
    seen: float | None = None  # when the read that held its echo returned


class ClientExited(RuntimeError):
    """The client is gone (or never came); the message holds its last screen."""


class ClientTerminal:
    """``python -m chatclient`` in a pty, with a thread reading everything it writes."""

    def __init__(
        self,
        port: int,
        *,
        client_path: Path,
        cols: int = 120,
        rows: int = 32,
        cpu: int | None = None,
        name: str = "bench",
    ) -> None:
        self.cols, self.rows = cols, rows
        env = {**os.environ, "TERM": "xterm-256color"}
        env["PYTHONPATH"] = client_pythonpath(client_path)
        cmd = [sys.executable, "-m", "chatclient", "--name", name, "--port", str(port)]
        cmd.append("--no-bell")
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]  # taskset execs: the pid stays the client's
        self.command = cmd
        self.child = pexpect.spawn(
            cmd[0], cmd[1:], dimensions=(rows, cols), env=env, cwd=str(client_path)
        )
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        self.scanner = Scanner()
        self._cond = threading.Condition()
        self._raw_tail = bytearray()  # the last output, for the screen shown on failure
        self.bytes_read = 0
        self.last_output = time.perf_counter()
        self.ended = False
        self.tags: dict[int, float] = {}  # tag number -> when first seen
        self.max_tag = -1
        self._pending: list[Key] = []
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.child.pid

    def _read(self) -> None:
        fd = self.child.child_fd
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # EIO: the client closed the pty
                data = b""
            now = time.perf_counter()
            if not data:
                with self._cond:
                    self.ended = True
                    self._cond.notify_all()
                return
            text, tags = self.scanner.feed(data)
            with self._cond:
                self.bytes_read += len(data)
                self.last_output = now
                self._raw_tail += data
                if len(self._raw_tail) > 1 << 19:
                    del self._raw_tail[: -(1 << 18)]
                for key in self._pending:
                    if key.seen is None and key.letter in text:
                        key.seen = now
                for n in tags:
                    self.tags.setdefault(n, now)
                    self.max_tag = max(self.max_tag, n)
                self._cond.notify_all()

    # ----------------------------------------------------------------- input

    def send(self, data: bytes) -> None:
        os.write(self.child.child_fd, data)  # straight to the pty: no pexpect delay

    def press(self, letter: bytes) -> Key:
        """Write one key; the reader notes when its echo shows."""
        with self._cond:
            key = Key(letter, time.perf_counter())
            self._pending.append(key)
            os.write(self.child.child_fd, letter)
        return key

    def take_keys(self) -> list[Key]:
        """Every key pressed since the last call."""
        with self._cond:
            keys, self._pending = self._pending, []
        return keys

    # ----------------------------------------------------------------- waits

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        """Until check() holds (evaluated under the lock after each read)."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while not check():
                left = deadline - time.perf_counter()
                if self.ended or left <= 0:
                    return check()
                self._cond.wait(min(left, 0.5))
        return True

    def wait_tag(self, n: int, timeout: float) -> float | None:
        """When tag ``n`` (or a later one: ``n`` may have scrolled by unseen) showed."""
        self.wait(lambda: self.max_tag >= n, timeout)
        self.check_alive()
        with self._cond:
            if n in self.tags:
                return self.tags[n]
            later = [t for m, t in self.tags.items() if m >= n]
            return min(later) if later else None

    def wait_keys(self, timeout: float) -> bool:
        """Until every key pressed has shown."""
        return self.wait(lambda: all(k.seen is not None for k in self._pending), timeout)

    def settle(self, quiet: float = 0.5, timeout: float = 30.0) -> None:
        """Until the client has written nothing for ``quiet`` seconds."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.check_alive()
            with self._cond:
                idle = time.perf_counter() - self.last_output
            if idle >= quiet:
                return
            time.sleep(quiet - idle)  # polling the output clock; bounded by the deadline

    def check_alive(self) -> None:
        if self.ended or not self.child.isalive():
            deadline = time.perf_counter() + 2.0  # the pty closed: the exit follows
            while self.child.isalive() and time.perf_counter() < deadline:
                time.sleep(0.05)
            status: object = self.child.exitstatus
            if status is None:
                status = f"signal {self.child.signalstatus}"
            raise ClientExited(f"the client exited (status {status}):\n{self.screen()}")

    # ----------------------------------------------------------------- end

    def screen(self) -> str:
        """The last screen, rebuilt from the last output (a failure's report)."""
        import pyte

        screen = pyte.Screen(self.cols, self.rows)
        with self._cond:
            raw = bytes(self._raw_tail)
        pyte.ByteStream(screen).feed(raw)
        lines = [line.rstrip() for line in screen.display]
        return "\n".join(line for line in lines if line) or "(nothing on screen)"

    def quit(self) -> int | None:
        """``/quit`` (the client's Ctrl-C may change), killed when it does not exit."""
        with contextlib.suppress(OSError):
            if self.child.isalive():
                self.send(CTRL_U + b"/quit\r")
                self.wait(lambda: self.ended, 5.0)
        if self.child.isalive():
            self.child.kill(9)
        with contextlib.suppress(Exception):
            self.child.close(force=True)
        return self.child.exitstatus
