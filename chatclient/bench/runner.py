"""One run: a server, the feeder, the client in a pty; the pane filled, then the scenarios.

- keys: K keys typed at 8/s into the input line, each timed from its write to
  the pty until its echo is in the client's output; the client's CPU meanwhile.
- busy: the feeder sends ``rate`` messages/s to the room shown for ``duration``
  seconds while keys are typed at 8/s; the client's CPU, the keys' latency,
  whether the last message sent was drawn and how long after it was sent.
- hidden: the same load while the client shows another room (``/join other``);
  the client's CPU, then back to the busy room (Alt-1) to see it all arrived.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatserver.bench.launcher import (
    SERVER_CPU,
    ServerProcess,
    affinity_kept,
    can_pin,
    cpu_busy_seconds,
    pin_self,
    proc_cpu_seconds,
)

from .feeder import Feeder
from .terminal import (
    ALT_1,
    CTRL_U,
    KEYS,
    ClientExited,
    ClientTerminal,
    Key,
    client_pythonpath,
    key_letter,
)

SCENARIOS = ("keys", "busy", "hidden")
ROOM, OTHER = "lobby", "other"
FILL_BATCH = 500  # messages per write while filling; two batches in flight at most
SENDQ = 64 << 20  # the client may fall far behind: never cut it as a slow consumer
# This checkout: what runs when no --client-path is given.
HERE = Path(__file__).resolve().parents[2]


class BenchError(RuntimeError):
    """The run cannot go on; the message says why (and shows the client's screen)."""


@dataclass
class Config:
    lines: int = 10_000  # messages put in the pane before the scenarios
    keys: int = 40
    key_rate: float = 8.0  # keys/s
    rate: float = 200.0  # feeder messages/s in busy and hidden
    duration: float = 10.0  # seconds of feeding in busy and hidden
    cols: int = 120
    rows: int = 32
    pin: bool = True
    timeout: float = 60.0  # for the client to draw a message it was sent


@dataclass
class Result:
    scenario: str
    client: str  # the --client-path (the checkout whose client ran)
    run: int
    pane_lines: int  # messages the bench had put in the busy room before the scenario
    keys: int = 0  # typed
    keys_shown: int = 0  # whose echo came
    key_ms: dict[str, float | None] = field(default_factory=dict)  # p50, p95, max
    cpu: float | None = None  # the client's utime+stime over the period, % of one core
    seconds: float = 0.0  # the period measured
    sent: int = 0  # feeder messages during the scenario
    drawn: int | None = None  # of those, up to the last one seen on screen
    catch_up_ms: float | None = None  # from the last send until it was drawn
    server_cpu: float | None = None  # % of one core over the same period
    bench_cpu: float | None = None  # the measuring side's (feeder and pty reader)
    other_cpu: float | None = None  # every other process's and the kernel's: noise

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def key_stats(latencies_ms: list[float]) -> dict[str, float | None]:
    if not latencies_ms:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(latencies_ms)
    n = len(ordered)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(n - 1, int(0.95 * n))], 2),
        "max": round(ordered[-1], 2),
    }


class CpuClock:
    """Processes' CPU time over a wall-clock period, as % of one core: the client's,
    the server's and this bench's (to show they were not the bottleneck), and the
    rest of the machine's (other work skews the figures)."""

    def __init__(self, client: int, server: int) -> None:
        self.pids = (client, server, os.getpid())
        self.cpu0 = [proc_cpu_seconds(pid) for pid in self.pids]
        self.machine0 = cpu_busy_seconds()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        cpu1 = [proc_cpu_seconds(pid) for pid in self.pids]
        machine = cpu_busy_seconds() - self.machine0
        wall = time.perf_counter() - self.t0
        used = [
            None if a is None or b is None else b - a for a, b in zip(self.cpu0, cpu1, strict=True)
        ]
        others = machine - sum(u or 0.0 for u in used)

        def share(seconds: float | None) -> float | None:
            return None if seconds is None or wall <= 0 else round(100 * seconds / wall, 1)

        return {
            "cpu": share(used[0]),
            "server_cpu": share(used[1]),
            "bench_cpu": share(used[2]),
            "other_cpu": share(max(0.0, others)),
            "seconds": round(wall, 3),
        }


class Typist:
    """Keys into the input line at a steady rate; a line is cleared (Ctrl-U) every
    13 keys, once its keys have all shown (a key cleared before its frame never
    shows). Each line starts one letter further on, so every cell changes."""

    def __init__(self, term: ClientTerminal) -> None:
        self.term = term
        self.line = 0
        self.pos = 0

    def type(self, rate: float, count: int | None = None, until: float | None = None) -> None:
        interval = 1.0 / rate
        due = time.perf_counter()
        typed = 0
        while (count is None or typed < count) and (until is None or due < until):
            if self.pos == len(KEYS):
                self.clear(3.0)
                due = max(due, time.perf_counter())
            time.sleep(max(0.0, due - time.perf_counter()))  # the typing schedule
            self.term.check_alive()
            self.term.press(key_letter(self.line, self.pos))
            self.pos += 1
            typed += 1
            due += interval

    def clear(self, timeout: float = 10.0) -> None:
        self.term.wait_keys(timeout)
        self.term.send(CTRL_U)
        self.line += 1
        self.pos = 0


def _latencies(keys: list[Key]) -> list[float]:
    return [(k.seen - k.sent) * 1000 for k in keys if k.seen is not None]


class Run:
    """Everything of one client's run, stopped by :meth:`close`."""

    def __init__(self, cfg: Config, client_path: Path, run: int) -> None:
        self.cfg = cfg
        self.client_path = client_path
        self.client = str(client_path)
        self.run = run
        self.pane_lines = 0
        self.server: ServerProcess | None = None
        self.feeder: Feeder | None = None
        self.term: ClientTerminal | None = None

    def start(self) -> None:
        cfg = self.cfg
        pin = cfg.pin and can_pin()
        cpus = sorted(os.sched_getaffinity(0)) if pin else []
        # The client gets a CPU of its own (the last); the server (CPU 0), the
        # feeder and this reader share the others.
        client_cpu = cpus[-1] if pin and cpus[-1] != SERVER_CPU else None
        pin_self([c for c in cpus if c != client_cpu] or None)
        self.server = ServerProcess(["--sendq", str(SENDQ)], pin=pin, db_memory=True)
        self.feeder = Feeder(self.server.host, self.server.port, rooms=(ROOM, OTHER))
        # In the other room's history before the client joins it: seen = switched.
        self.switch_tag = self.feeder.new_tag()
        self.feeder.say(OTHER, [self.feeder.tagged(self.switch_tag, "the other room")])
        self.term = ClientTerminal(
            self.server.port,
            client_path=self.client_path,
            cols=cfg.cols,
            rows=cfg.rows,
            cpu=client_cpu,
        )
        deadline = time.perf_counter() + 20.0
        while not self.feeder.wait_join(ROOM, "bench", 0.2):
            self.term.check_alive()  # a client that fails at once fails the run at once
            if time.perf_counter() > deadline:
                raise BenchError(f"the client never joined {ROOM}:\n{self.term.screen()}")
        self.term.settle()
        self.typist = Typist(self.term)

    def _clock(self) -> CpuClock:
        assert self.term is not None and self.server is not None
        return CpuClock(self.term.pid, self.server.pid)

    def _result(self, scenario: str, **figures: Any) -> Result:
        return Result(scenario, self.client, self.run, self.pane_lines, **figures)

    def _drawn(self, tag_no: int, what: str) -> float | None:
        assert self.term is not None
        seen = self.term.wait_tag(tag_no, self.cfg.timeout)
        if seen is None:
            raise BenchError(
                f"the client did not draw {what} within {self.cfg.timeout:.0f}s:\n"
                f"{self.term.screen()}"
            )
        return seen

    def fill(self, lines: int) -> None:
        """``lines`` messages into the room, as fast as the client draws them."""
        assert self.feeder is not None and self.term is not None
        marks: list[int] = []
        for start in range(0, lines, FILL_BATCH):
            if len(marks) >= 2:
                self._drawn(marks[-2], f"message {start - FILL_BATCH} of the fill")
            count = min(FILL_BATCH, lines - start)
            texts = [self.feeder.texts.next() for _ in range(count - 1)]
            marks.append(self.feeder.new_tag())
            texts.append(self.feeder.tagged(marks[-1]))
            self.feeder.say(ROOM, texts)
        if marks:
            self._drawn(marks[-1], f"the last of {lines} messages")
        self.pane_lines += lines
        self.term.settle()

    def keys(self) -> Result:
        assert self.term is not None
        cfg = self.cfg
        clock = self._clock()
        self.typist.type(cfg.key_rate, count=cfg.keys)
        self.term.wait_keys(10.0)
        cpu = clock.stop()
        keys = self.term.take_keys()
        self.typist.clear()
        self.term.settle()
        lat = _latencies(keys)
        return self._result(
            "keys", keys=len(keys), keys_shown=len(lat), key_ms=key_stats(lat), **cpu
        )

    def _stream(self, room: str, out: list[Any]) -> None:
        assert self.feeder is not None
        try:
            out.append(self.feeder.stream(room, self.cfg.rate, self.cfg.duration))
        except OSError as exc:  # the run fails on the main thread, which has the screen
            out.append(exc)

    def _outcome(self, sent: int, marks: dict[int, int], end: float) -> dict[str, Any]:
        """How much of the feed was drawn: all of it once its last message shows."""
        assert self.term is not None
        last = max(marks)
        try:
            seen: float | None = self._drawn(last, "the feed's last message")
        except BenchError:
            seen = None
        if seen is not None:
            return {"drawn": sent, "catch_up_ms": round(max(0.0, seen - end) * 1000, 1)}
        shown = [count for n, count in marks.items() if n in self.term.tags]
        return {"drawn": max(shown, default=0), "catch_up_ms": None}

    def busy(self) -> Result:
        assert self.term is not None
        cfg = self.cfg
        out: list[Any] = []
        feed = threading.Thread(target=self._stream, args=(ROOM, out), daemon=True)
        clock = self._clock()
        feed.start()
        self.typist.type(cfg.key_rate, until=clock.t0 + cfg.duration)
        feed.join()
        cpu = clock.stop()
        if isinstance(out[0], OSError):
            raise BenchError(f"the feeder's connection failed: {out[0]}")
        sent, marks, end = out[0]
        self.term.wait_keys(cfg.timeout)
        outcome = self._outcome(sent, marks, end)
        keys = self.term.take_keys()
        self.typist.clear()
        self.term.settle()
        self.pane_lines += sent
        lat = _latencies(keys)
        return self._result(
            "busy", keys=len(keys), keys_shown=len(lat), key_ms=key_stats(lat), sent=sent,
            **cpu, **outcome,
        )  # fmt: skip

    def hidden(self) -> Result:
        assert self.feeder is not None and self.term is not None
        self.term.send(f"/join {OTHER}\r".encode())
        self._drawn(self.switch_tag, f"the room {OTHER} after /join {OTHER}")
        self.term.settle()
        clock = self._clock()
        sent, marks, end = self.feeder.stream(ROOM, self.cfg.rate, self.cfg.duration)
        cpu = clock.stop()
        self.term.send(ALT_1)  # back to the busy room: was everything there?
        outcome = self._outcome(sent, marks, end)
        outcome["catch_up_ms"] = None  # the room was out of sight: no lag to speak of
        self.term.settle()
        result = self._result("hidden", sent=sent, **cpu, **outcome)
        self.pane_lines += sent
        return result

    def close(self) -> None:
        if self.term is not None:
            self.term.quit()
        if self.feeder is not None:
            self.feeder.close()
        if self.server is not None:
            self.server.stop()


def client_module(client_path: Path) -> str:
    """Where the client under test is imported from, asked the way the bench starts it."""
    env = {**os.environ, "PYTHONPATH": client_pythonpath(client_path)}
    out = subprocess.run(
        [sys.executable, "-c", "import chatclient; print(chatclient.__file__)"],
        cwd=client_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode:
        raise BenchError(f"cannot import chatclient from {client_path}: {out.stderr.strip()}")
    return str(Path(out.stdout.strip()).parent)


def measure(
    cfg: Config,
    scenarios: list[str],
    client_path: Path,
    run: int = 1,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Fill the pane, then each scenario in order, on one fresh server and client."""
    results = []
    with affinity_kept():
        bench = Run(cfg, client_path, run)
        try:
            bench.start()
            bench.fill(cfg.lines)
            for name in scenarios:
                result = getattr(bench, name)()
                results.append(result)
                if progress:
                    progress(result)
        except ClientExited as exc:
            raise BenchError(str(exc)) from None
        finally:
            bench.close()
    return results
