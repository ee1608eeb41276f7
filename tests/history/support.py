"""Helpers for the history tests: one-line start-up refusals, waiting on the store's log."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.helpers import TIMEOUT, Client


def start(*args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``python -m chatserver`` with these arguments, expected to stop by itself."""
    cmd = [sys.executable, "-m", "chatserver", "--port", "0", "--loop", "asyncio", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **popen)


def one_line_refusal(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    """The server refused to start: status 3, one line on stderr, no traceback."""
    assert result.returncode == 3, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.search(pattern, lines[0]), lines[0]


def wait_until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Poll a condition another thread makes true (no fixed sleep: fails after timeout)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class LogWatch(logging.Handler):
    """The chatserver log lines, as they come, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.lines.append((record.levelno, record.getMessage()))
            self._changed.notify_all()

    def matching(self, pattern: str) -> list[tuple[int, str]]:
        with self._changed:
            return [line for line in self.lines if re.search(pattern, line[1])]

    def wait(self, pattern: str, timeout: float = TIMEOUT) -> tuple[int, str]:
        """The first line that matches, waiting for it if need be."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.matching(pattern), timeout):
                raise AssertionError(f"no log line matched {pattern!r}: {self.lines}")
        return self.matching(pattern)[0]


@contextmanager
def watching_log() -> Iterator[LogWatch]:
    logger = logging.getLogger("chatserver")
    watch = LogWatch()
    old_level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(old_level)


def joined(port: int, name: str, room: str = "lobby", **hello: Any) -> Client:
    client = Client(port)
    client.hello(name, rooms=[room], **hello)
    client.expect("history", room=room)
    return client


def full_history(port: int, room: str = "lobby") -> list[dict[str, Any]]:
    """Every message the server still has for a room, oldest first, by paging."""
    probe = joined(port, "probe")
    got: list[dict[str, Any]] = []
    before = None
    while True:
        req: dict[str, Any] = {"type": "history", "room": room, "limit": 100, "ref": len(got)}
        if before is not None:
            req["before"] = before
        probe.send(req)
        page = probe.expect("history", ref=len(got))
        got = page["messages"] + got
        if not page["more"] or not page["messages"]:
            break
        before = page["messages"][0]["id"]
    probe.close()
    return got
