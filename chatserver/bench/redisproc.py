"""A ``redis-server`` of our own: a directory, the append-only file on, a free port.

The benchmark's cluster mode (``--redis``) and the cluster tests
(``tests/cluster``) both start Redis through :class:`RedisProcess`: it can be
killed with SIGKILL and started again on the same directory and port (the
append-only file kept) or with its data wiped, and it reports its CPU time.

It is ready when it answers ``PING`` on its socket: the start waits for the
"Ready to accept connections" line of its log (stdout, read as it comes) and
then asks. Talking to it needs no client library: :func:`command` speaks
enough RESP for ``PING``, ``XADD``, ``XRANGE``, ``INFO`` and the like.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .launcher import FollowedLog, free_port, proc_cpu_seconds, proc_rss_kib

START_TIMEOUT = 10.0
# Where redis-server is, when it is not on PATH (and the tests' way to pretend
# it is missing: point this at nothing).
BINARY_ENV = "CHATSERVER_REDIS_SERVER"


def redis_server_path() -> str | None:
    """The redis-server to run: $CHATSERVER_REDIS_SERVER, else the one on PATH."""
    path = os.environ.get(BINARY_ENV)
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which("redis-server")


class RedisReplyError(Exception):
    """Redis answered with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> Any:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exactly(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line!r}")


def command(host: str, port: int, *args: Any, timeout: float = 5.0) -> Any:
    """Send one command on a fresh connection and return its reply (bulk strings as bytes)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        return _Reader(sock).reply()


class RedisProcess:
    """One redis-server in ``directory`` (a temporary one by default) on ``port``.

    ``fsync`` is ``appendfsync``: ``always`` (every write on disk before the
    reply: what "acknowledged means in the log" needs) or ``everysec``.
    ``cpus`` pins it with taskset. Started by the constructor.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        fsync: str = "always",
        cpus: list[int] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        binary = redis_server_path()
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH (or $CHATSERVER_REDIS_SERVER)")
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="chatredis-")
            directory = self._tmp.name
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.command_line = [
            binary,
            "--port", str(self.port),
            "--bind", host,
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", fsync,
            "--save", "",  # no RDB snapshots: the append-only file is the data
            "--daemonize", "no",
            "--logfile", "",  # the log on stdout, which we read
            *(extra_args or []),
        ]  # fmt: skip
        if cpus and shutil.which("taskset"):
            # taskset execs redis-server, so the pid is Redis's own.
            self.command_line = ["taskset", "-c", ",".join(map(str, cpus)), *self.command_line]
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- life ---------------------------------------------------------------

    def start(self) -> None:
        """Start it (again, on the same directory and port) and wait until it answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            self.command_line,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._log = FollowedLog(self.proc.stdout)
        self.log = self._log.lines
        try:
            self.wait_log(r"Ready to accept connections", START_TIMEOUT)
            reply = self.command("PING")
        except BaseException:
            self.kill()
            raise
        if reply != "PONG":
            self.kill()
            raise RuntimeError(f"redis-server answered PING with {reply!r}")

    def wait_log(self, pattern: str, timeout: float = START_TIMEOUT) -> str:
        """The next line of its log (since the last one matched) that matches."""
        line = self._log.wait(pattern, timeout)
        if line is not None:
            return line
        why = "exited" if self._log.ended else f"said nothing like it within {timeout}s"
        raise RuntimeError(f"redis-server {why} ({pattern!r}): {''.join(self.log[-10:])}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write; what the append-only file has is what is left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(START_TIMEOUT)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, *, wipe: bool = False) -> None:
        """Kill -9 and start again on the same port: with its data, or with none (``wipe``)."""
        self.kill()
        if wipe:
            for entry in self.dir.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.start()

    def stop(self) -> None:
        """Kill it and remove its temporary directory (a given directory is left)."""
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- looking at it --------------------------------------------------------

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        return command(self.host, self.port, *args, timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int | None:
        return proc_rss_kib(self.pid)

    def aof_bytes(self) -> int:
        """The size of its append-only files (Redis 7 keeps them in a directory)."""
        return sum(p.stat().st_size for p in self.dir.rglob("*.aof") if p.is_file())
