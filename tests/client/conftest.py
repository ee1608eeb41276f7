from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll the app's model until check() holds (the app redraws on its own loop)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.01)


def _port_args(port: int | None) -> list[str]:
    return [] if port is None else ["--port", str(port)]


def run_client(
    port: int | None, *args: str, input: str = "", timeout: float = 15.0
) -> subprocess.CompletedProcess[str]:
    """``python -m chatclient`` in script mode, to completion (port None: no ``--port``)."""
    return subprocess.run(
        [sys.executable, "-m", "chatclient", *_port_args(port), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def spawn_client(port: int | None, *args: str) -> subprocess.Popen[str]:
    """A long-running script-mode client (``--listen``); stdin and stdout are pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "chatclient", *_port_args(port), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


class Lines:
    """The lines of a stream, read by a thread so that waits can time out."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line)

    def wait(self, needle: str, timeout: float = TIMEOUT) -> str:
        """The first line (seen already or still to come) that holds needle."""
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if needle in line:
                return line
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"never saw {needle!r}; saw {self.seen}") from None
            self.seen.append(line)
            if needle in line:
                return line
