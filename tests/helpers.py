"""Test helpers: a real server in a thread or a process, and blocking clients.

Everything talks over real loopback sockets bound to port 0. Nothing sleeps
to synchronise: every wait is for a byte, an event or a log line, with a
timeout that fails the test.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from chatserver.bench.launcher import FollowedLog
from chatserver.config import Settings
from chatserver.protocol import FrameDecoder, encode_frame
from chatserver.server import ChatServer

TIMEOUT = 5.0

_prefixes = itertools.count(1)
_test_redis: Any = None


def test_redis() -> Any:
    """One redis-server for the whole run (CHATSERVER_TEST_CLUSTER=1), stopped at exit."""
    global _test_redis
    if _test_redis is None:
        from chatserver.bench.redisproc import RedisProcess

        _test_redis = RedisProcess(Path(tempfile.mkdtemp(prefix="chat-redis-")))
        atexit.register(_test_redis.stop)
    return _test_redis


class ThreadServer:
    """A ChatServer on its own event loop in a background thread."""

    def __init__(self, **overrides: Any) -> None:
        overrides.setdefault("port", 0)
        overrides.setdefault("close_linger", 2.0)
        if os.environ.get("CHATSERVER_TEST_HISTORY") == "sqlite" and "db" not in overrides:
            # The whole suite again on the durable store (make test does both).
            self._tmp = tempfile.TemporaryDirectory()
            overrides["db"] = os.path.join(self._tmp.name, "history.db")
        if os.environ.get("CHATSERVER_TEST_CLUSTER") == "1" and "redis" not in overrides:
            # The whole suite again on a one-process cluster (make test does it):
            # the same contract through the Redis log and registry. A chat of
            # its own on the shared test Redis.
            overrides["redis"] = test_redis().url
            overrides["redis_prefix"] = f"t{next(_prefixes)}"
            overrides.setdefault("node", "test")
        self.settings = replace(Settings(), **overrides)
        self.loop = asyncio.new_event_loop()
        self.server = ChatServer(self.settings)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(TIMEOUT) or self._error:
            raise RuntimeError(f"server did not start: {self._error}")
        self.host, self.port = self.server.address

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn in the server's loop and return its result (to inspect state)."""

        async def wrapper() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(TIMEOUT)

    def stop(self) -> None:
        if self.loop.is_closed():
            return  # stopped already (by the test itself)
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(TIMEOUT + 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


class Client:
    """A blocking framed-JSON (or raw) client over a real socket."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.decoder = FrameDecoder(max_frame=1 << 30)
        self.pending: list[bytes] = []
        self.eof = False
        self.name = ""

    # -- sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(payload))

    def send(self, obj: dict[str, Any]) -> None:
        self.send_frame(json.dumps(obj).encode())

    def hello(self, name: str, **fields: Any) -> dict[str, Any]:
        """Say hello and return the welcome (history/join events stay queued)."""
        self.name = name
        self.send({"type": "hello", "name": name, **fields})
        return self.expect("welcome")

    # -- receiving
    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.pending.extend(self.decoder.feed(data))
        return True

    def recv_payload(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.pending:
            if not self._fill(deadline):
                raise AssertionError(
                    "no frame arrived" + (" (connection closed)" if self.eof else "")
                )
        return self.pending.pop(0)

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        while True:
            payload = self.recv_payload(timeout)
            if payload:  # skip keepalives
                return json.loads(payload)

    def expect(self, type_: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next event of this type (others before it are skipped and kept)."""
        skipped = []
        try:
            while True:
                event = self.recv(timeout)
                if event["type"] == type_ and all(event.get(k) == v for k, v in fields.items()):
                    return event
                skipped.append(event)
        finally:
            self.skipped = skipped

    def expect_next(self, type_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The very next event must have this type."""
        event = self.recv(timeout)
        assert event["type"] == type_, event
        return event

    def wait_closed(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Read to EOF; return the JSON events that arrived before it."""
        deadline = time.monotonic() + timeout
        events = []
        while True:
            while self.pending:
                payload = self.pending.pop(0)
                if payload:
                    events.append(json.loads(payload))
            if self.eof:
                return events
            if not self._fill(deadline) and not self.eof:
                raise AssertionError(f"connection still open; got {events}")

    def close(self) -> None:
        self.sock.close()


class LineClient:
    """A netcat-like client: raw bytes out, text lines in."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buf = b""
        self.eof = False
        self.seen: list[str] = []

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def readline(self, timeout: float = TIMEOUT) -> bytes:
        """One line with its line end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line arrived; have {self.buf!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                self.eof = True
                raise AssertionError(f"connection closed; have {self.buf!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The next line matching a regex (earlier lines are skipped, and kept
        in ``seen``)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        self.seen = seen
        while True:
            try:
                line = self.readline(max(0.0, deadline - time.monotonic())).decode()
            except AssertionError:
                raise AssertionError(f"no line matched {pattern!r}; saw {seen}") from None
            if re.search(pattern, line):
                return line
            seen.append(line)

    def close(self) -> None:
        self.sock.close()


class ProcessServer:
    """``python -m chatserver`` as a real process; the port is read from its log.

    Its log (stderr) is read in the background from the start, so a chatty
    server never blocks on a full pipe; :meth:`wait_log` waits for the next
    line that matches.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        if not any(a == "--db" or a.startswith("--db=") for a in args):  # never the user's file
            args = (*args, "--db", ":memory:")
        cmd = [sys.executable, "-m", "chatserver", "--port", "0", "--loop", "asyncio", *args]
        self._launch(cmd, env)

    def _launch(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``cmd``, read its log from now on, and learn its port from it."""
        self.cmd, self.env = cmd, env
        self.proc = subprocess.Popen(
            cmd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._log = FollowedLog(self.proc.stderr)
        self.log = self._log.lines
        line = self.wait_log(r"listening on")
        match = re.search(r"listening on (\S+):(\d+)", line)
        assert match, line
        self.port = int(match.group(2))

    def wait_log(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The next log line (after the last one matched) that matches."""
        line = self._log.wait(pattern, timeout)
        if line is None:
            raise AssertionError(f"log never matched {pattern!r}: {''.join(self.log)}")
        return line

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to end and its log to be read to the end; its status."""
        status = self.proc.wait(timeout)
        if not self._log.wait_end(timeout):
            raise AssertionError("the log never ended")
        return status

    def rss_kib(self) -> int:
        """The server's resident set size in KiB, from /proc (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)


def read_to_eof(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Everything until EOF (or a reset); fails if the peer keeps it open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data
