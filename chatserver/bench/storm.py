"""The ``storm`` scenario: N clients into one room at once, as after a restart.

A few *bystanders* are in the room first; one of them says a message every
``PING_EVERY`` seconds and the others measure how long each takes to reach
them (one clock: they run in one process of their own), so the figure is what members already in
the room live through while the storm runs. Then every storm client connects
at the same moment (no batching: after a restart they all come back within a
fraction of a second) and the clock runs until every one of them is in (its
``welcome``; for IRC, the end of the ``NAMES`` list of its ``JOIN``).

With ``restart`` the server is then stopped (SIGTERM: ``bye shutdown`` to
everyone) and started again on the same port and history, and every client
comes back the way the terminal client does: after
``chatclient.session.backoff_delays`` (its base and cap, its jitter), again
after each failed try, with ``hello.since`` the last id it saw.

One process, one epoll: a storm client that is in moves to a second poller
that is read only every ``SLOW_READ`` seconds, so the thousands of idle
members cost the generator little and the bystanders are read at once.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import os
import re
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatclient.session import backoff_delays

from .launcher import proc_cpu_seconds

ROOM = "storm"
BYSTANDERS = 4  # in the room before the storm; the first says, the others measure
# Seconds between the bystander's messages: each is 5 000 writes (one a member)
# in a full room, 25-50 ms of the server's CPU here; at 20 a second the room
# alone would keep the server busy, and the storm would measure that instead.
PING_EVERY = 0.2
SLOW_READ = 0.5  # seconds between reads of the members that are in
BASELINE = 0.5  # seconds of pings before the storm
AFTER = 0.5  # seconds of pings after the last client is in
RECV = 1 << 16

WELCOME = b'"type":"welcome"'
ERROR = b'"type":"error"'
BYE = b'"type":"bye"'
PING_MARK = re.compile(rb"~P(\d+)~")
MSG_ID = re.compile(rb'"type":"msg","id":(\d+)')

# Client states
CONNECTING, HELLO, JOINING, IN, DEAD, WAITING = range(6)


@dataclass
class StormResult:
    server: str  # "chatserver" or "inspircd"
    clients: int
    in_s: float | None = None  # from the first connect until every client is in
    failed: int = 0  # clients that never got in (refused, dropped, timed out)
    failures: dict[str, int] = field(default_factory=dict)
    bystander_ms: dict[str, float | None] = field(default_factory=dict)
    baseline_ms: dict[str, float | None] = field(default_factory=dict)  # before the storm
    bystander_sent: int = 0  # the bystander's messages during the storm
    bystander_lost: int = 0  # of those, never received (the restart's excepted)
    server_cpu_s: float | None = None  # the server's CPU time during the storm
    gen_cpu_s: float | None = None  # the storm generator's (near in_s: it is the bound)
    # With restart: from SIGTERM until every client is back in.
    restart_back_s: float | None = None
    restart_failed: int | None = None
    restart_tries: int | None = None  # connection attempts, the successful ones included
    restart_bystander_ms: dict[str, float | None] | None = None
    restart_stop_s: float | None = None  # SIGTERM until the old process exited
    restart_start_s: float | None = None  # from then until the new one listened
    command: list[str] | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class _Client:
    __slots__ = (
        "attempts",
        "delays",
        "fd",
        "last_id",
        "name",
        "sock",
        "state",
        "tail",
        "why",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = WAITING
        self.tail = b""
        self.why = ""
        self.last_id = 0
        self.attempts = 0
        self.delays: Any = None


class _Storm:
    """The generator's one loop: connects, handshakes, the bystanders' pings."""

    def __init__(self, proto: str, host: str, port: int, timeout: float) -> None:
        self.proto = proto
        self.addr = (host, port)
        self.timeout = timeout
        self.fast = select.epoll()
        self.slow = select.epoll()
        self.by_fd: dict[int, _Client] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.reconnect = False  # after a restart: dropped clients come back
        self.tries = 0
        # Bystander pings: seq -> send time; (send time, latency) of those received.
        self.sent_at: dict[tuple[str, int], float] = {}  # (receiver, seq) -> send time
        self.samples: list[tuple[float, float]] = []
        self.pinger: _Client | None = None
        self.receivers: list[_Client] = []
        self.ping_no = 0
        self.pinging = False
        self.got_in = 0  # clients that got in (counted, not searched: thousands of them)
        self.dead = 0

    # -- timers

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self._seq, fn))

    # -- connections

    def connect(self, c: _Client) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock, c.fd, c.state, c.tail = sock, sock.fileno(), CONNECTING, b""
        c.attempts += 1
        self.tries += 1
        self.by_fd[c.fd] = c
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            self._failed(c, errno.errorcode.get(err, str(err)))
            return
        self.fast.register(c.fd, select.EPOLLOUT | select.EPOLLIN)

    def _send(self, c: _Client, data: bytes) -> None:
        assert c.sock is not None
        try:
            c.sock.send(data)  # small: a hello, a say; the socket buffer takes it
        except OSError as exc:
            self._failed(c, errno.errorcode.get(exc.errno or 0, "send"))

    def _frame(self, obj: dict[str, Any]) -> bytes:
        payload = json.dumps(obj).encode()
        return b"%-10d%s" % (len(payload), payload)

    def _handshake(self, c: _Client) -> None:
        if self.proto == "irc":
            self._send(c, f"NICK {c.name}\r\nUSER {c.name} 0 * :storm\r\n".encode())
        else:
            hello: dict[str, Any] = {"type": "hello", "name": c.name, "proto": 1, "rooms": [ROOM]}
            if c.last_id:
                hello["since"] = {ROOM: c.last_id}  # as the terminal client resumes
            self._send(c, self._frame(hello))
        if c.state == CONNECTING:
            c.state = HELLO

    def _close(self, c: _Client) -> None:
        if c.sock is None:
            return
        for poller in (self.fast, self.slow):
            with contextlib.suppress(OSError, ValueError):
                poller.unregister(c.fd)
        self.by_fd.pop(c.fd, None)
        c.sock.close()
        c.sock = None

    def _failed(self, c: _Client, why: str) -> None:
        """Not in, or dropped: a failure, or (after a restart) a try again later."""
        self._close(c)
        if self.reconnect:
            c.state = WAITING
            if c.delays is None:
                c.delays = backoff_delays()  # the terminal client's, jitter included
            self.later(next(c.delays), lambda: self.connect(c))
            return
        c.state = DEAD
        c.why = why
        self.dead += 1

    def _in(self, c: _Client) -> None:
        c.state = IN
        self.got_in += 1
        c.delays = None
        if c is not self.pinger and c not in self.receivers:
            # Idle members are read now and then, many at a time.
            self.fast.unregister(c.fd)
            self.slow.register(c.fd, select.EPOLLIN)

    # -- input

    def _readable(self, c: _Client) -> None:
        assert c.sock is not None
        chunks = []
        while True:
            try:
                data = c.sock.recv(RECV)
            except BlockingIOError:
                break
            except OSError as exc:
                self._failed(c, errno.errorcode.get(exc.errno or 0, "recv"))
                return
            if not data:
                self._failed(c, "closed by server" if c.state != IN else "dropped")
                return
            chunks.append(data)
            if len(data) < RECV:
                break
        if not chunks:
            return
        data = c.tail + b"".join(chunks)
        c.tail = data[-64:]
        if self.proto == "irc":
            self._irc_input(c, data)
        else:
            self._chat_input(c, data)
        if c.sock is not None and c in self.receivers:
            now = time.monotonic()
            for m in PING_MARK.finditer(data):
                key = (c.name, int(m.group(1)))
                sent = self.sent_at.pop(key, None)
                if sent is not None:
                    self.samples.append((sent, now - sent))

    def _chat_input(self, c: _Client, data: bytes) -> None:
        if c.state == HELLO:
            if ERROR in data and WELCOME not in data:
                self._failed(c, "error: " + data[data.find(ERROR) :][:80].decode(errors="replace"))
                return
            if WELCOME in data:
                self._in(c)
        ids = MSG_ID.findall(data)
        if ids:
            c.last_id = max(c.last_id, int(ids[-1]))

    def _irc_input(self, c: _Client, data: bytes) -> None:
        if b"PING " in data:
            for line in data.split(b"\n"):
                if line.startswith(b"PING "):
                    self._send(c, b"PONG " + line[5:].rstrip(b"\r") + b"\r\n")
        if c.state == HELLO and b" 001 " in data:
            self._send(c, f"JOIN #{ROOM}\r\n".encode())
            c.state = JOINING
        if c.state == JOINING and b" 366 " in data:
            self._in(c)
        elif c.state in (HELLO, JOINING) and b"ERROR :" in data:
            self._failed(c, "irc error")

    # -- the bystanders' messages

    def _ping(self) -> None:
        if not self.pinging:
            return
        self.later(PING_EVERY, self._ping)
        p = self.pinger
        if p is None or p.state != IN or any(r.state != IN for r in self.receivers):
            return  # one of them is reconnecting: nothing to measure
        self.ping_no += 1
        text = f"~P{self.ping_no}~"
        now = time.monotonic()
        for r in self.receivers:
            self.sent_at[(r.name, self.ping_no)] = now
        if self.proto == "irc":
            self._send(p, f"PRIVMSG #{ROOM} :{text}\r\n".encode())
        else:
            self._send(p, self._frame({"type": "say", "room": ROOM, "text": text}))

    def start_pings(self) -> None:
        self.pinging = True
        self.later(0, self._ping)

    # -- the loop

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        next_slow = 0.0
        while not done():
            now = time.monotonic()
            if now > deadline:
                return False
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            wait = min(SLOW_READ, deadline - now)
            if self.timers:
                wait = min(wait, max(0.0, self.timers[0][0] - now))
            for fd, ev in self.fast.poll(wait, max(1, len(self.by_fd))):
                c = self.by_fd.get(fd)
                if c is None:
                    continue
                if c.state == CONNECTING:
                    assert c.sock is not None
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._failed(c, errno.errorcode.get(err, str(err)))
                        continue
                    self.fast.modify(fd, select.EPOLLIN)
                    self._handshake(c)
                    continue
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self._readable(c)
            if time.monotonic() >= next_slow:
                next_slow = time.monotonic() + SLOW_READ
                for fd, _ in self.slow.poll(0, max(1, len(self.by_fd))):
                    c = self.by_fd.get(fd)
                    if c is not None:
                        self._readable(c)
        return True

    def close_all(self) -> None:
        for c in list(self.by_fd.values()):
            self._close(c)
        self.fast.close()
        self.slow.close()


def _ms(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p99": None, "max": None}
    s = sorted(latencies)
    n = len(s)
    return {
        "p50": round(s[n // 2] * 1e3, 2),
        "p99": round(s[min(n - 1, int(0.99 * n))] * 1e3, 2),
        "max": round(s[-1] * 1e3, 2),
    }


def _bystanders(proto: str, host: str, port: int, pipe: Any) -> None:
    """The child process: the bystanders chat until told to stop, coming back
    after a restart like everyone else; sends back (sent, latency) pairs."""
    # The storm's generator shares this CPU: what must be measured is the
    # server's delay, so the bystanders go first when both are ready to run.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)  # allowed to root only; else as it is
    g = _Storm(proto, host, port, 0)
    g.reconnect = True
    by = [_Client(f"by{i}") for i in range(BYSTANDERS)]
    g.pinger, g.receivers = by[0], by[1:]  # read as soon as bytes come
    try:
        for c in by:
            g.connect(c)
        ok = g.run_until(lambda: all(c.state == IN for c in by), 30)
        pipe.send(ok)
        if not ok:
            return
        g.start_pings()
        g.run_until(pipe.poll, 1e9)
        pipe.send((g.samples, list(g.sent_at.values())))
    finally:
        g.close_all()


def _window(
    samples: list[tuple[float, float]], lost: list[float], t0: float, t1: float
) -> tuple[dict[str, float | None], int, int]:
    """The latencies of the pings sent between t0 and t1; how many, how many never came."""
    within = [lat for sent, lat in samples if t0 <= sent <= t1]
    missing = sum(1 for sent in lost if t0 <= sent <= t1)
    return _ms(within), len(within) + missing, missing


def run_storm(
    proto: str,
    host: str,
    port: int,
    clients: int,
    *,
    pid: int | None = None,
    restart: Callable[[], object] | None = None,
    timeout: float = 120.0,
) -> StormResult:
    """Storm the server at ``host:port`` (``pid``: whose CPU time to take);
    ``restart`` stops it and starts it again for the reconnect storm.

    The bystanders run in a process of their own, so what they measure is the
    server's delay, not this loop's while it handshakes thousands of sockets.
    """
    import multiprocessing

    res = StormResult(server="inspircd" if proto == "irc" else "chatserver", clients=clients)
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_bystanders, args=(proto, host, port, theirs), daemon=True)
    child.start()
    g = _Storm(proto, host, port, timeout)
    try:
        if not (mine.poll(30) and mine.recv()):
            res.note = "the bystanders did not get in"
            return res
        time.sleep(BASELINE)  # a measuring window: the bystanders chat alone first
        storm = [_Client(f"st{i}") for i in range(clients)]
        cpu0 = proc_cpu_seconds(pid) if pid else None
        gen0 = time.process_time()
        t0 = time.monotonic()
        for c in storm:
            g.connect(c)
        finished = g.run_until(lambda: g.got_in + g.dead >= clients, timeout)
        t1 = time.monotonic()
        res.gen_cpu_s = round(time.process_time() - gen0, 2)
        res.in_s = round(t1 - t0, 3) if finished else None
        cpu1 = proc_cpu_seconds(pid) if pid else None
        if cpu0 is not None and cpu1 is not None:
            res.server_cpu_s = round(cpu1 - cpu0, 2)
        for c in storm:
            if c.state != IN:
                why = c.why or "not in within the timeout"
                res.failures[why] = res.failures.get(why, 0) + 1
        res.failed = sum(res.failures.values())
        t2 = t3 = 0.0
        if restart is not None:
            # The reconnect storm: everyone is in; the server restarts.
            g.reconnect = True
            tries0 = g.tries
            g.got_in = 0  # each client is in again once

            def back_in() -> bool:
                return g.got_in >= clients

            # The restart runs beside the loop: the clients see the bye, and
            # back off against a closed port, as they would.
            restarting = threading.Thread(target=restart, daemon=True)
            t2 = time.monotonic()
            restarting.start()
            back = g.run_until(back_in, timeout)
            t3 = time.monotonic()
            res.restart_back_s = round(t3 - t2, 3) if back else None
            res.restart_failed = sum(1 for c in storm if c.state != IN)
            res.restart_tries = g.tries - tries0
            restarting.join(30)
        g.run_until(lambda: time.monotonic() - t3 >= AFTER, AFTER + 1)
        mine.send("stop")
        samples, lost = mine.recv() if mine.poll(30) else ([], [])
        res.baseline_ms = _window(samples, lost, t0 - BASELINE, t0)[0]
        res.bystander_ms, res.bystander_sent, missing = _window(samples, lost, t0, t1)
        res.bystander_lost = missing
        if restart is not None:
            res.restart_bystander_ms, _, _ = _window(samples, lost, t2, t3)
        return res
    finally:
        g.close_all()
        child.join(10)
        if child.is_alive():
            child.kill()


# ---------------------------------------------------------------------------
# InspIRCd, the peer (optional: found on PATH or in $INSPIRCD)

INSPIRCD_CONF = """
<server name="storm.bench" description="storm" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect allow="127.0.0.1" maxchans="20" localmax="1000000" globalmax="1000000"
         limit="1000000" threshold="1000000" commandrate="1000000" fakelag="no"
         sendq="10485760" recvq="65536" pingfreq="600" timeout="60" maxconnwarn="no"
         resolvehostnames="no" usednsbl="no">
<performance softlimit="{limit}" somaxconn="{somaxconn}" clonesonconnect="no" timeskipwarn="0">
<options defaultmodes="nt" hostintopic="no">
<security hidebans="yes">
<limits maxchan="64">
<pid file="{dir}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{dir}/ircd.log">
"""


class InspIRCd:
    """One InspIRCd on a free port, pinned like the chat server."""

    def __init__(self, binary: str, port: int, pinned: bool, clients: int) -> None:
        import subprocess

        self._tmp = tempfile.TemporaryDirectory(prefix="stormirc-")
        d = Path(self._tmp.name)
        conf = d / "inspircd.conf"
        conf.write_text(
            INSPIRCD_CONF.format(port=port, dir=d, limit=clients + 1000, somaxconn=4096)
        )
        cmd = [binary, "--nofork", "--config", str(conf)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--runasroot")  # it refuses root otherwise (a container's only user)
        if pinned:
            cmd = ["taskset", "-c", "0", *cmd]
        self.command = cmd
        self.port = port
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inspircd exited ({self.proc.returncode})")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            time.sleep(0.05)  # polling a process we do not control; bounded above
        raise RuntimeError("inspircd did not listen within 15 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self._tmp.cleanup()


def inspircd_path() -> str | None:
    """$INSPIRCD, else ``inspircd`` on PATH, else None (the peer is left out)."""
    import shutil

    given = os.environ.get("INSPIRCD")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("inspircd")


def measure_storm(
    clients: int,
    *,
    pin: bool = True,
    db_memory: bool = False,
    server_args: list[str] | None = None,
    restart: bool = True,
    peer: str | None = None,
    timeout: float = 120.0,
) -> list[StormResult]:
    """The chat server's join storm (and reconnect storm), then the peer's join
    storm when ``peer`` (an InspIRCd binary) is given; one result each."""
    from .launcher import ServerProcess, can_pin, generator_cpus, pin_self

    results = []
    with tempfile.TemporaryDirectory(prefix="chatstorm-") as tmp:
        db = ":memory:" if db_memory else str(Path(tmp) / "history.db")
        args = [*(server_args or []), "--db", db]
        servers = [ServerProcess(args, pin=pin)]
        try:
            first = servers[0]
            pin_self(generator_cpus(first.pinned))

            def again() -> int:
                t = time.monotonic()
                servers[-1].proc.terminate()  # SIGTERM: bye shutdown to everyone
                servers[-1].proc.wait(30)
                stopped = time.monotonic()
                servers.append(ServerProcess(args, pin=pin, port=first.port))
                timing["restart_stop_s"] = round(stopped - t, 3)
                timing["restart_start_s"] = round(time.monotonic() - stopped, 3)
                return servers[-1].pid

            timing: dict[str, float] = {}

            res = run_storm(
                "chat",
                first.host,
                first.port,
                clients,
                pid=first.pid,
                restart=again if restart else None,
                timeout=timeout,
            )
            res.command = first.command
            res.restart_stop_s = timing.get("restart_stop_s")
            res.restart_start_s = timing.get("restart_start_s")
            results.append(res)
        finally:
            for server in servers:
                server.stop()
    if peer is not None:
        from .launcher import free_port

        irc = InspIRCd(peer, free_port(), pin and can_pin(), clients)
        try:
            pid = irc.proc.pid  # taskset execs it: the server's own
            res = run_storm("irc", "127.0.0.1", irc.port, clients, pid=pid, timeout=timeout)
            res.command = irc.command
            results.append(res)
        finally:
            irc.stop()
    return results


def storm_table(results: list[StormResult]) -> str:
    lines = [
        "server      clients   all in (s)  failed  server CPU (s)  bystander p50/p99/max (ms)"
        "  | restart: back in (s)  failed  tries  bystander p99 (ms)"
    ]
    for r in results:
        b = r.bystander_ms
        line = (
            f"{r.server:<11} {r.clients:>7}   {_f(r.in_s):>10}  {r.failed:>6}  "
            f"{_f(r.server_cpu_s):>14}  {_f(b.get('p50'))}/{_f(b.get('p99'))}/{_f(b.get('max'))}"
        )
        if r.restart_back_s is not None or r.restart_failed is not None:
            rb = r.restart_bystander_ms or {}
            line += (
                f"  | {_f(r.restart_back_s):>18}  {r.restart_failed:>6}  {r.restart_tries:>5}"
                f"  {_f(rb.get('p99'))}"
            )
        if r.failures:
            line += f"  failures: {r.failures}"
        if r.note:
            line += f"  ({r.note})"
        lines.append(line)
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
