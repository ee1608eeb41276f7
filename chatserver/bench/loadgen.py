"""The load generator: simulated clients on raw non-blocking sockets, open loop.

Each worker process owns a share of the clients and one poller (epoll on
Linux). Messages go out on a fixed schedule whatever the server does, and each
carries its scheduled send time in its text, so a server that stalls shows up
as latency instead of slowing the senders down (no coordinated omission).

Receiving must keep up with millions of deliveries a second, far more than
Python can parse frame by frame, so every client only *counts* with C-speed
``bytearray.count`` over each chunk it reads (a match split across two chunks
is counted from the bytes around the boundary), and is read only every few
milliseconds so each read brings many frames; only the few *sample* receivers
are read as soon as bytes arrive and find the send-time markers (a regex over
the chunk) for latency.

The coordinator (the parent process) and the workers talk over pipes:
worker -> ready; parent -> start (a common clock origin) or hold; worker -> its
sent counts; parent -> every room's total, from which each worker knows how
many deliveries to wait for; worker -> result.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import re
import resource
import select
import socket
import time
import traceback
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from .launcher import pin_self
from .scenarios import Scenario

MSG = b'"type":"msg"'
WELCOME = b'"type":"welcome"'
SLOW = b'"slow_consumer"'
# ~T<scheduled monotonic ns>~<sender id>~ ; the closing ~ makes a marker cut by
# a chunk boundary impossible to match half-read.
MARK = re.compile(rb"~T(\d+)~(\d+)~")
TAIL = 48  # bytes kept from a chunk's end: longer than any pattern above

RECV_SIZE = 1 << 18
CONNECT_BATCH = 200  # connects in flight: the server's accept backlog is finite
SETUP_TIMEOUT = 120.0
SETTLE = 0.5  # seconds between "all ready" and the first message (join storms end)
LATE_NS = 1_000_000  # a send this late counts as the generator falling behind
MAX_SAMPLES = 4_000_000

IN, OUT = select.POLLIN, select.POLLOUT  # the same values as EPOLLIN/EPOLLOUT


class _Poller:
    """epoll where there is one, else poll(2); timeouts in seconds."""

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._p: Any = select.epoll()
            self._ms = False
        else:
            self._p = select.poll()
            self._ms = True
        self.register = self._p.register
        self.modify = self._p.modify
        self.unregister = self._p.unregister

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self._p.poll(timeout * 1000 if self._ms else timeout)


class _Client:
    __slots__ = (
        "closed",
        "cut",
        "fd",
        "id",
        "name",
        "node",
        "out",
        "own",
        "ready",
        "room",
        "sample",
        "say",
        "sbuf",
        "sent",
        "sock",
        "tail",
        "wout",
    )

    def __init__(self, cid: int, room: int, sample: bool, node: int = 0) -> None:
        self.id = cid
        self.name = b"b%d" % cid
        self.room = room
        self.node = node  # the index of the server process it connects to
        self.sample = sample
        self.sock: socket.socket | None = None
        self.fd = -1
        self.ready = False
        self.closed = False
        self.cut = ""  # why the server cut us off: "slow_consumer", "eof", "error"
        self.out = bytearray()  # bytes the socket did not take yet
        self.tail = b""  # the stream's last TAIL bytes
        self.sbuf = b""  # sample receivers: bytes after the last complete marker
        self.own = b'"from":"' + self.name + b'"'  # our own echoes, not deliveries
        self.say = b'{"type":"say","room":"r%d","text":"' % room
        self.sent = 0
        self.wout = False  # registered with the fast poller for writability


@dataclass
class WorkerResult:
    ready: int = 0
    failed: int = 0
    first_error: str = ""
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    echoes: int = 0
    cut_slow: int = 0
    cut_eof: int = 0
    send_s: float = 0.0
    cpu_s: float = 0.0  # this worker's CPU time during the send phase
    late: int = 0  # sends more than LATE_NS after their scheduled time
    late_max_ns: int = 0
    latencies: array = field(default_factory=lambda: array("q"))
    node_delivered: list[int] = field(default_factory=list)  # by server process


class _Worker:
    def __init__(
        self,
        scn: Scenario,
        host: str,
        ports: list[int],
        ids: list[int],
        samples: set[int],
        index: int,
        nworkers: int,
        pipe: Connection,
    ) -> None:
        self.scn = scn
        self.addrs = [(host, port) for port in ports]
        n = len(ports)
        self.clients = [_Client(i, scn.room_of(i), i in samples, scn.node_of(i, n)) for i in ids]
        self.senders = [c for c in self.clients if scn.is_sender(c.id)]
        self.by_fd: dict[int, _Client] = {}
        self.index = index
        self.nworkers = nworkers
        self.pipe = pipe
        # The fast poller serves the pipe, the sample receivers and every socket
        # with bytes to write; the bulk poller the other receivers, which only
        # count, so they are read every ``read_ms``, in big chunks.
        self.poller = _Poller()
        self.poller.register(pipe.fileno(), IN)
        self.bulk = _Poller()
        self.next_bulk = 0.0
        self.read_interval = scn.read_ms / 1000
        self.inbox: list[Any] = []  # messages from the parent
        self.buf = bytearray(RECV_SIZE)  # recv_into: no allocation per read
        self.res = WorkerResult()
        self.msgs = 0
        self.own = 0
        self.node_got = [0] * n  # deliveries (messages less own echoes) by server process
        self.measuring = False
        self.pad = b"x" * scn.size

    # -- sockets ------------------------------------------------------------

    def _open(self, c: _Client) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self.addrs[c.node])
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(c, f"connect: {os.strerror(err)}")
            return
        c.sock = sock
        c.fd = sock.fileno()
        self.by_fd[c.fd] = c
        if c.sample:
            self.poller.register(c.fd, IN | OUT)
        else:
            self.bulk.register(c.fd, IN)
            self.poller.register(c.fd, OUT)
            c.wout = True

    def _want_out(self, c: _Client, on: bool) -> None:
        if c.sample:
            self.poller.modify(c.fd, IN | OUT if on else IN)
        elif on != c.wout:
            if on:
                self.poller.register(c.fd, OUT)
            else:
                self.poller.unregister(c.fd)
            c.wout = on

    def _fail(self, c: _Client, why: str) -> None:
        self.res.failed += 1
        if not self.res.first_error:
            self.res.first_error = why
        self._close(c)

    def _close(self, c: _Client) -> None:
        if c.closed:
            return
        c.closed = True
        if c.sock is not None:
            self.by_fd.pop(c.fd, None)
            for poller in (self.poller, self.bulk):
                with contextlib.suppress(OSError, KeyError, ValueError):
                    poller.unregister(c.fd)
            c.sock.close()

    def _hello(self, c: _Client) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(c, f"connect: {os.strerror(err)}")
            return
        payload = b'{"type":"hello","name":"%s","proto":1,"rooms":["r%d"]}' % (c.name, c.room)
        self._send(c, b"%-10d%s" % (len(payload), payload))
        if not c.out and not c.closed:
            self._want_out(c, False)

    def _send(self, c: _Client, data: bytes) -> None:
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._cut(c, "error")
            return
        if n < len(data):
            c.out += data[n:]
            self._want_out(c, True)

    def _writable(self, c: _Client) -> None:
        if not c.ready and not c.out:
            self._hello(c)  # the connect finished
            return
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            self._cut(c, "error")
            return
        del c.out[:n]
        if not c.out:
            self._want_out(c, False)

    def _cut(self, c: _Client, why: str) -> None:
        if not c.ready:
            self._fail(c, f"closed during the handshake ({why})")
            return
        if c.closed:
            return
        if why == "eof" and SLOW in c.tail:
            why = "slow_consumer"
        c.cut = why
        if self.measuring:
            if why == "slow_consumer":
                self.res.cut_slow += 1
            else:
                self.res.cut_eof += 1
        self._close(c)

    def _readable(self, c: _Client) -> None:
        buf = self.buf
        try:
            n = c.sock.recv_into(buf)
        except BlockingIOError:
            return
        except OSError:
            self._cut(c, "error")
            return
        if not n:
            self._cut(c, "eof")
            return
        tail = c.tail
        # Matches inside the chunk, plus any straddling the previous chunk's end.
        k = len(MSG) - 1
        msgs = buf.count(MSG, 0, n) + (tail[-k:] + buf[:k]).count(MSG)
        mine = c.own
        k = len(mine) - 1
        own = buf.count(mine, 0, n) + (tail[-k:] + buf[:k]).count(mine)
        self.msgs += msgs
        self.own += own
        self.node_got[c.node] += msgs - own
        c.tail = bytes(buf[n - TAIL : n]) if n >= TAIL else (tail + buf[:n])[-TAIL:]
        if c.sample and self.measuring:
            self._sample(c, bytes(buf[:n]))
        if not c.ready:
            data = tail + buf[:n]
            if WELCOME in data:
                c.ready = True
                self.res.ready += 1
            elif b'"type":"error"' in data:
                self._fail(c, "refused: " + data[10:200].decode(errors="replace"))

    def _sample(self, c: _Client, data: bytes) -> None:
        buf = c.sbuf + data
        now = time.monotonic_ns()
        lat = self.res.latencies
        me = b"%d" % c.id
        end = 0
        for m in MARK.finditer(buf):
            end = m.end()
            if m.group(2) != me and len(lat) < MAX_SAMPLES:
                lat.append(now - int(m.group(1)))
        c.sbuf = buf[max(end, len(buf) - TAIL) :]

    def _pump(self, timeout: float) -> Any:
        """Serve the sockets for up to ``timeout`` s; return a message from the parent if any."""
        now = time.monotonic()
        if now >= self.next_bulk:
            self._bulk()
            self.next_bulk = now + self.read_interval
        self._fast(max(0.0, min(timeout, self.next_bulk - now)))
        return self.inbox.pop(0) if self.inbox else None

    def _fast(self, timeout: float) -> None:
        by_fd = self.by_fd
        for fd, ev in self.poller.poll(timeout):
            c = by_fd.get(fd)
            if c is not None:
                self._event(c, ev)
            elif fd == self.pipe.fileno():
                self.inbox.append(self.pipe.recv())

    def _bulk(self) -> None:
        by_fd = self.by_fd
        for i, (fd, ev) in enumerate(self.bulk.poll(0)):
            c = by_fd.get(fd)
            if c is not None:
                self._event(c, ev)
            if i & 31 == 31:
                # Between slices of the sweep, the sample receivers and the
                # senders: their timing must not wait for a whole sweep.
                self._fast(0)

    def _event(self, c: _Client, ev: int) -> None:
        if ev & (IN | select.POLLHUP | select.POLLERR):
            self._readable(c)
        if ev & OUT and not c.closed:
            self._writable(c)

    # -- phases -------------------------------------------------------------

    def connect_all(self) -> None:
        pending = list(reversed(self.clients))
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            settled = self.res.ready + self.res.failed
            while pending and len(self.clients) - len(pending) - settled < CONNECT_BATCH:
                self._open(pending.pop())
                settled = self.res.ready + self.res.failed
            if not pending and settled >= len(self.clients):
                return
            if time.monotonic() > deadline:
                for c in self.clients:
                    if not c.ready and not c.closed:
                        self._fail(c, "setup timed out")
                return
            self._pump(0.05)

    def wait_for(self, kind: str) -> Any:
        """Keep reading the sockets until the parent sends a message of this kind."""
        while True:
            message = self._pump(0.1)
            if message is not None:
                if message[0] != kind:
                    raise RuntimeError(f"expected {kind}, got {message[0]}")
                return message

    def send_phase(self, start_ns: int, end_ns: int) -> None:
        scn = self.scn
        res = self.res
        rate = scn.rate
        w, nw = self.index, self.nworkers
        senders = [c for c in self.senders if c.ready]
        # This worker sends the messages w, w + nw, w + 2 nw, ... of the common schedule.
        step = nw * 1e9 / rate if rate > 0 else 0.0
        first = start_ns + w * 1e9 / rate if rate > 0 else end_ns
        pad = self.pad
        size = scn.size
        k = 0
        rr = 0
        cpu0 = _cpu()
        while True:
            now = time.monotonic_ns()
            if now >= start_ns and not self.measuring:
                self.measuring = True
                self.msgs = self.own = 0
                self.node_got = [0] * len(self.node_got)
                cpu0 = _cpu()
            if now >= end_ns:
                break
            sched = int(first + k * step)
            while sched <= now and sched < end_ns and senders:
                c = senders[rr]
                if c.closed:
                    senders.pop(rr)
                    rr = rr % len(senders) if senders else 0
                    continue
                rr = (rr + 1) % len(senders)
                text = b"~T%d~%d~" % (sched, c.id)
                text += pad[: size - len(text)]
                payload = c.say + text + b'"}'
                self._send(c, b"%-10d%s" % (len(payload), payload))
                c.sent += 1
                res.sent += 1
                lag = now - sched
                if lag > LATE_NS:
                    res.late += 1
                    if lag > res.late_max_ns:
                        res.late_max_ns = lag
                k += 1
                sched = int(first + k * step)
            # Poll timeouts are whole milliseconds: round down and spin the last one,
            # or every message would leave up to 1 ms late.
            wait_ms = (min(sched, end_ns) - time.monotonic_ns()) // 1_000_000
            self._pump(max(0, min(wait_ms, 10)) / 1000)
        res.send_s = (time.monotonic_ns() - start_ns) / 1e9
        res.cpu_s = _cpu() - cpu0

    def drain_phase(self, deadline: float) -> None:
        rooms: dict[int, int] = {}
        for c in self.clients:
            rooms[c.room] = rooms.get(c.room, 0) + c.sent
        self.pipe.send(("sent", rooms))
        totals = self.wait_for("totals")[1]
        # Every member but the sender gets each message (the cut-off ones too: their
        # missing deliveries are loss).
        self.res.expected = sum(totals.get(c.room, 0) - c.sent for c in self.clients if c.ready)
        while self.msgs - self.own < self.res.expected and time.monotonic() < deadline:
            if not self.by_fd:
                break
            self._pump(0.01)

    def finish(self) -> WorkerResult:
        self.res.delivered = self.msgs - self.own
        self.res.echoes = self.own
        self.res.node_delivered = self.node_got
        for c in self.clients:
            self._close(c)
        return self.res


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _worker_main(
    scn: Scenario,
    host: str,
    ports: list[int],
    ids: list[int],
    samples: set[int],
    index: int,
    nworkers: int,
    cpus: list[int],
    pipe: Connection,
) -> None:
    try:
        pin_self(cpus)
        worker = _Worker(scn, host, ports, ids, samples, index, nworkers, pipe)
        worker.connect_all()
        pipe.send(("ready", worker.res.ready, worker.res.failed, worker.res.first_error))
        if scn.idle:
            worker.measuring = True  # a client cut off while held is counted
            worker.wait_for("stop")
        else:
            _, start_ns, end_ns, drain = worker.wait_for("start")
            worker.send_phase(start_ns, end_ns)
            worker.drain_phase(time.monotonic() + drain)
        pipe.send(("result", worker.finish()))
    except Exception:
        pipe.send(("error", traceback.format_exc()))
    finally:
        pipe.close()


# ---------------------------------------------------------------------------
# The coordinator


@dataclass
class LoadResult:
    """What the workers saw, summed; the report adds the server's side."""

    clients: int
    ready: int
    failed: int
    first_error: str
    setup_s: float
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    echoes: int = 0
    cut_slow: int = 0
    cut_eof: int = 0
    send_s: float = 0.0
    gen_cpu_s: float = 0.0
    late: int = 0
    late_max_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    node_delivered: list[int] = field(default_factory=list)  # by server process


class Hooks:
    """Called by :func:`run_load` at the moments the server is measured."""

    def before_start(self) -> None: ...
    def at_end(self) -> None: ...
    def while_held(self) -> None: ...


def sample_ids(scn: Scenario) -> set[int]:
    """The receivers that parse for latency, spread over the clients and rooms."""
    n = scn.clients
    if scn.sample <= 0 or scn.sample >= n:
        return set(range(n))
    gap = n / scn.sample
    return {int(j * gap + gap / 2) for j in range(scn.sample)}


def run_load(
    scn: Scenario,
    host: str,
    port: int,
    *,
    workers: int = 1,
    cpus: list[int] | None = None,
    hooks: Hooks | None = None,
    ports: list[int] | None = None,
) -> LoadResult:
    """Connect every client, run the schedule (or hold, for idle), sum the results.

    With ``ports`` (cluster mode: one per server process) the clients are
    spread over them (:meth:`Scenario.node_of`) and ``port`` is not used.
    """
    ports = list(ports) if ports else [port]
    hooks = hooks or Hooks()
    workers = max(1, min(workers, scn.clients))
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    samples = sample_ids(scn)
    pipes: list[Connection] = []
    procs = []
    for w in range(workers):
        ids = list(range(w, scn.clients, workers))
        mine, theirs = ctx.Pipe()
        # With one CPU per worker they stay apart; otherwise they share the set.
        wcpus = [cpus[w]] if cpus and len(cpus) >= workers else (cpus or [])
        p = ctx.Process(
            target=_worker_main,
            args=(scn, host, ports, ids, samples & set(ids), w, workers, wcpus, theirs),
            daemon=True,
        )
        p.start()
        theirs.close()
        pipes.append(mine)
        procs.append(p)
    try:
        t0 = time.monotonic()
        ready = _gather(pipes, "ready", SETUP_TIMEOUT + 30)
        setup_s = time.monotonic() - t0
        errors = [m[3] for m in ready if m[3]]
        out = LoadResult(
            clients=scn.clients,
            ready=sum(m[1] for m in ready),
            failed=sum(m[2] for m in ready),
            first_error=errors[0] if errors else "",
            setup_s=setup_s,
        )
        if scn.idle:
            _sleep(scn.duration)
            hooks.while_held()
            for pipe in pipes:
                pipe.send(("stop",))
            results = [m[1] for m in _gather(pipes, "result", 30)]
        else:
            start_ns = time.monotonic_ns() + int(SETTLE * 1e9)
            end_ns = start_ns + int(scn.duration * 1e9)
            for pipe in pipes:
                pipe.send(("start", start_ns, end_ns, scn.drain))
            _sleep((start_ns - time.monotonic_ns()) / 1e9)
            hooks.before_start()
            _sleep((end_ns - time.monotonic_ns()) / 1e9)
            hooks.at_end()
            sent = _gather(pipes, "sent", scn.duration + 60)
            totals: dict[int, int] = {}
            for m in sent:
                for room, count in m[1].items():
                    totals[room] = totals.get(room, 0) + count
            for pipe in pipes:
                pipe.send(("totals", totals))
            results = [m[1] for m in _gather(pipes, "result", scn.drain + 60)]
        for r in results:
            out.sent += r.sent
            out.expected += r.expected
            out.delivered += r.delivered
            out.echoes += r.echoes
            out.cut_slow += r.cut_slow
            out.cut_eof += r.cut_eof
            out.send_s = max(out.send_s, r.send_s)
            out.gen_cpu_s += r.cpu_s
            out.late += r.late
            out.late_max_ns = max(out.late_max_ns, r.late_max_ns)
            out.latencies_ns.extend(r.latencies)
            if not out.node_delivered:
                out.node_delivered = [0] * len(r.node_delivered)
            for k, got in enumerate(r.node_delivered):
                out.node_delivered[k] += got
        return out
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        for pipe in pipes:
            pipe.close()


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)  # the coordinator only waits for the schedule's clock


def _gather(pipes: list[Connection], kind: str, timeout: float) -> list[Any]:
    """One message of this kind from every worker, in worker order."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(pipes):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"workers did not report {kind!r} within {timeout:.0f}s")
        for pipe in wait([p for i, p in enumerate(pipes) if i not in got], left):
            i = pipes.index(pipe)  # type: ignore[arg-type]
            try:
                message = pipe.recv()  # type: ignore[union-attr]
            except EOFError:
                raise RuntimeError(f"load worker {i} died") from None
            if message[0] == "error":
                raise RuntimeError(f"load worker {i} failed:\n{message[1]}")
            if message[0] != kind:
                raise RuntimeError(f"load worker {i}: expected {kind!r}, got {message[0]!r}")
            got[i] = message
    return [got[i] for i in range(len(pipes))]
