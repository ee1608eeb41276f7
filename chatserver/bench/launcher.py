"""Starting the server under test: a free port, CPU pinning, its memory and CPU time.

The server runs as ``python -m chatserver`` in its own process, pinned to CPU 0
with ``taskset`` when the machine has a second CPU for the load generator.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SERVER_CPU = 0
START_TIMEOUT = 15.0


def raise_nofile() -> tuple[int, int]:
    """Lift the soft open-files limit to the hard one (the server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def can_pin() -> bool:
    return (
        shutil.which("taskset") is not None
        and hasattr(os, "sched_getaffinity")
        and len(os.sched_getaffinity(0)) >= 2
        and SERVER_CPU in os.sched_getaffinity(0)
    )


def generator_cpus(pinned: bool) -> list[int]:
    """The CPUs the load generator may use: all but the server's when it is pinned."""
    if not hasattr(os, "sched_getaffinity"):
        return list(range(os.cpu_count() or 1))
    cpus = sorted(os.sched_getaffinity(0))
    return [c for c in cpus if c != SERVER_CPU] if pinned else cpus


def pin_self(cpus: list[int] | None) -> None:
    """Run this process on ``cpus`` from now on (nothing where it cannot pin)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def affinity_kept() -> Iterator[None]:
    """Give this process back the CPUs it had, whatever pinning happens inside."""
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        yield
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


@functools.cache
def server_supports(option: str) -> bool:
    """Whether ``python -m chatserver --help`` lists an option (``--db`` is on its way)."""
    out = subprocess.run(
        [sys.executable, "-m", "chatserver", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return re.search(rf"(?<![\w-]){re.escape(option)}\b", out) is not None


def proc_rss_kib(pid: int) -> int | None:
    """A process's VmRSS from /proc (Linux), in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (utime + stime of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FollowedLog:
    """A process's output, read a line at a time on a thread from its start (a
    chatty process never blocks on a full pipe), with a wait for the next line
    that matches. One per run of a process: a restart makes a new one, so the
    old run's reader, still reading to its end, touches nothing of the new."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._cursor = 0  # wait() looks at the lines from here on
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait(self, pattern: str, timeout: float) -> str | None:
        """The next line (after the last one matched) that matches; None if the
        output ended or ``timeout`` passed first (``ended`` tells which)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                while self._cursor < len(self.lines):
                    line = self.lines[self._cursor]
                    self._cursor += 1
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    return None
                self._changed.wait(left)

    def wait_end(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.ended, timeout)


class ServerProcess:
    """One ``python -m chatserver`` for one measurement; stopped by :meth:`stop`."""

    def __init__(
        self,
        extra_args: list[str] | None = None,
        *,
        pin: bool = True,
        db_memory: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)  # a given one: a restart on the same port
        self.pinned = pin and can_pin()
        self._tmp = tempfile.TemporaryDirectory(prefix="chatbench-")
        self.log_path = Path(self._tmp.name) / "server.log"
        args = [
            "--host", host,
            "--port", str(self.port),
            "--msg-rate", "0",
            "--max-per-ip", "100000",
            "--max-clients", "100000",
            "--log-level", "WARNING",
        ]  # fmt: skip
        if server_supports("--db"):
            # Durable history is part of the default settings: measure it, on a
            # throwaway file so runs never see each other's messages.
            db = ":memory:" if db_memory else str(Path(self._tmp.name) / "history.db")
            args += ["--db", db]
        args += extra_args or []
        cmd = [sys.executable, "-m", "chatserver", *args]
        if self.pinned:
            cmd = ["taskset", "-c", str(SERVER_CPU), *cmd]
        self.command = cmd
        with open(self.log_path, "wb") as log:
            # taskset execs the server, so this pid is the server's.
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)  # polling a process we do not control; bounded above
        self.stop()
        raise RuntimeError(f"the server did not listen within {START_TIMEOUT}s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int | None:
        """VmRSS from /proc (Linux), in KiB."""
        return proc_rss_kib(self.pid)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far."""
        return proc_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every CPU, every process, the kernel)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def busy_cpus(interval: float = 0.3) -> dict[int, float]:
    """Per CPU, the share of time it was busy during a short look (before a run).

    The figures mean little on a machine that is busy with something else.
    """

    def snap() -> dict[int, tuple[int, int]]:
        out = {}
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("cpu") and line[3].isdigit():
                        name, *vals = line.split()
                        ticks = [int(v) for v in vals]
                        out[int(name[3:])] = (sum(ticks), ticks[3] + ticks[4])  # total, idle
        except OSError:
            pass
        return out

    a = snap()
    time.sleep(interval)  # a sampling window, not synchronisation
    b = snap()
    return {
        cpu: round(1 - (b[cpu][1] - a[cpu][1]) / max(1, b[cpu][0] - a[cpu][0]), 2)
        for cpu in a
        if cpu in b
    }
