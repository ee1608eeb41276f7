"""One chat session over the network: connect, hello, receive, reconnect and resume.

The framing and the message types come from ``chatserver.protocol``; this
module only adds the asyncio plumbing a client needs. Both front ends (the
full-screen app and script mode) drive a :class:`Session` and receive its
events through callbacks, already de-duplicated across reconnects.

Resume: every reconnect says ``hello`` again with the session token of the
last ``welcome`` (so a ghost of ours that the server still holds is replaced,
not reported as ``name_taken``) and ``since`` = the last message id seen per
room. A server restarted without persistent history numbers its messages from
1 again, which ``since`` alone would filter out, so the session also asks each
room for its recent history; messages already seen are recognised by
(id, ts) and dropped, so nothing is shown twice either way.

Several servers (``SessionConfig.servers``, the processes of one cluster):
after a drop the session tries them in turn, the next one first and wrapping
around, one full round between two backoff delays, and resumes on whichever
answers with the same token and ``since``. A cluster's processes share one
log, so a message has the same (id, ts) on each and the de-duplication holds
across them as it does across reconnects to one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chatserver.protocol import (
    Bye,
    DmEvent,
    ErrorEvent,
    Event,
    FrameDecoder,
    Hello,
    History,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Ping,
    Pong,
    ProtocolError,
    Quit,
    Ref,
    Request,
    Welcome,
    encode,
    name_key,
    parse_event,
)

DEFAULT_PORT = 5500
CONNECT_TIMEOUT = 10.0
REFUSALS = frozenset({"name_taken", "bad_name", "bad_password", "server_full", "too_many_rooms"})
NO_RECONNECT_BYES = frozenset({"quit", "replaced", "kicked"})
ELSEWHERE_REFUSALS = frozenset({"server_full"})  # about that process: another one may take us
NODE_LABEL_MAX = 64  # characters of welcome.node shown to the user
SEEN_PER_ROOM = 5000  # message keys remembered per room for de-duplication
RESUME_HISTORY = 100  # recent messages asked of each room after a reconnect


class ConnectError(Exception):
    """The server could not be reached (refused, unreachable, TLS, timeout)."""


class HelloRefused(Exception):
    """The server answered ``hello`` with an error (``name_taken``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(Exception):
    """The connection dropped and the session does not reconnect."""


class Status(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"  # dropped; waiting to reconnect
    CLOSED = "closed"


def format_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets: ``[::1]:5500``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def welcome_node(welcome: Welcome) -> str | None:
    """The name of the cluster process a welcome came from, bounded; None when not said."""
    node = welcome.node
    return None if node is None or node == "" else str(node)[:NODE_LABEL_MAX]


@dataclass
class SessionConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # (host, port) of each server to try, in order; empty: just host and port.
    servers: tuple[tuple[str, int], ...] = ()
    rooms: tuple[str, ...] = ("lobby",)
    password: str | None = None
    tls: bool = False
    cafile: str | None = None
    insecure: bool = False
    reconnect: bool = True
    backoff_base: float = 0.25
    backoff_cap: float = 30.0
    ping_interval: float = 0.0  # 0: no keep-alive pings
    ping_timeout: float = 20.0  # a pong later than this means the link is dead

    @property
    def endpoints(self) -> tuple[tuple[str, int], ...]:
        return self.servers or ((self.host, self.port),)


def backoff_delays(
    base: float = 0.25, cap: float = 30.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Exponential backoff with "equal jitter": each delay is in [d/2, d], d doubling to cap.

    The jitter keeps many clients of a restarted server from all coming back
    in the same instant.
    """
    rng = rng or random.Random()
    for attempt in itertools.count():
        ceiling = min(cap, base * 2**attempt)
        yield ceiling / 2 + rng.uniform(0, ceiling / 2)


def msg_key(msg: MsgEvent | DmEvent) -> tuple[int, str]:
    """What identifies a message across reconnects (ids restart with an in-memory server)."""
    return (msg.id, msg.ts)


class SeenSet:
    """The keys of the last messages of one room, bounded."""

    def __init__(self, limit: int = SEEN_PER_ROOM) -> None:
        self.limit = limit
        self._keys: OrderedDict[tuple[int, str], None] = OrderedDict()

    def add(self, key: tuple[int, str]) -> bool:
        """Remember key; False when it was already there (a duplicate)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True


@dataclass
class Tracker:
    """What a session must remember to resume: name, rooms, last ids, seen messages.

    Pure bookkeeping, no I/O, so the resume logic is unit-tested on its own.
    """

    name: str
    rooms: list[str] = field(default_factory=list)
    last_id: dict[str, int] = field(default_factory=dict)
    seen: dict[str, SeenSet] = field(default_factory=dict)
    session: str | None = None
    backfill_refs: set[Ref] = field(default_factory=set)  # history asked for after a reconnect
    asked_refs: set[Ref] = field(default_factory=set)  # history the user asked for: shown whole

    def hello(self, config: SessionConfig) -> Hello:
        rooms = tuple(self.rooms) if self.rooms else config.rooms
        since = {room: self.last_id[room] for room in rooms if room in self.last_id}
        return Hello(
            name=self.name,
            rooms=rooms,
            since=since,
            session=self.session,
            password=config.password,
        )

    def _new(self, room: str, msg: MsgEvent | DmEvent) -> bool:
        seen = self.seen.get(room)
        if seen is None:
            seen = self.seen[room] = SeenSet()
        return seen.add(msg_key(msg))

    def is_me(self, name: str) -> bool:
        return name_key(name) == name_key(self.name)

    def filter(self, event: Event) -> Event | None:
        """Update the bookkeeping; return the event minus what was already seen, or None."""
        if isinstance(event, Welcome):
            self.name = event.name
            self.session = event.session or self.session
            self.rooms = list(event.rooms)
        elif isinstance(event, MsgEvent):
            self.last_id[event.room] = event.id
            if not self._new(event.room, event):
                return None
        elif isinstance(event, DmEvent):
            if not self._new("@dm", event):
                return None
        elif isinstance(event, HistoryReply):
            if event.ref is not None and event.ref in self.asked_refs:
                self.asked_refs.discard(event.ref)
                for m in event.messages:
                    self._new(event.room, m)
                return event
            backfill = event.ref is not None and event.ref in self.backfill_refs
            if backfill:
                self.backfill_refs.discard(event.ref)
            elif event.messages:
                # A replay after join or hello: the resume point moves on.
                self.last_id[event.room] = event.messages[-1].id
            fresh = [m for m in event.messages if self._new(event.room, m)]
            if len(fresh) != len(event.messages):
                if backfill and not fresh:
                    return None
                event = replace(event, messages=fresh)
        elif isinstance(event, JoinEvent):
            if self.is_me(event.name) and event.room not in self.rooms:
                self.rooms.append(event.room)
        elif isinstance(event, LeaveEvent):
            if self.is_me(event.name) and event.room in self.rooms:
                self.rooms.remove(event.room)
        elif isinstance(event, NickEvent) and self.is_me(event.old):
            self.name = event.new
        return event


class Session:
    """A connection to the server that comes back by itself.

    ``on_event(event)`` gets every server event (duplicates removed, our own
    keep-alive pongs hidden); ``on_status(status, detail)`` gets connection
    changes. ``start()`` makes the first connection and raises ConnectError or
    HelloRefused; ``run()`` then reads until the session ends.
    """

    def __init__(
        self,
        config: SessionConfig,
        on_event: Callable[[Event], None],
        on_status: Callable[[Status, str], None] | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.on_status = on_status or (lambda status, detail: None)
        self.tracker = Tracker(name=config.name)
        self.status = Status.CONNECTING
        self.welcome: Welcome | None = None
        self.latency: float | None = None  # seconds, from the last ping
        self.reconnects = 0
        self.server_index = 0  # which of config.endpoints we are (or were last) connected to
        self.skipped: list[str] = []  # why the servers tried before the current one failed
        self.node: str | None = None  # the cluster process we are on (welcome.node), if it says
        self.resumed = False  # True once a reconnect was tried: replays are missed messages
        self.resume_refs: set[Ref] = set()  # the history requests made after a reconnect
        self._refs = itertools.count(1)
        self._ping_refs: dict[Ref, float] = {}
        self._barriers: dict[Ref, asyncio.Future[None]] = {}
        self._pending: list[bytes] = []  # frames written while offline
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(max_frame=1 << 24)
        self._buffered: list[bytes] = []
        self._closing = False
        self._hurry = False  # /reconnect: no backoff wait before the next try
        self._wake = asyncio.Event()  # ends a backoff wait early
        self._last_pong = time.monotonic()

    # ------------------------------------------------------------------ public

    @property
    def name(self) -> str:
        return self.tracker.name

    @property
    def address(self) -> str:
        """``host:port`` of the server we are connected to (or trying)."""
        return format_address(*self.config.endpoints[self.server_index])

    @property
    def server_label(self) -> str:
        """What the user is shown: ``host:port``, and the node's name when there is one."""
        node = self.node
        return f"{self.address} (node {node})" if node else self.address

    def next_ref(self) -> str:
        return f"c{next(self._refs)}"

    def send(self, request: Request) -> Ref:
        """Send a request with a fresh ref (unless it has one); queued while offline."""
        if getattr(request, "ref", None) is None:
            request = replace(request, ref=self.next_ref())  # type: ignore[type-var]
        ref = request.ref
        if isinstance(request, History) and ref not in self.tracker.backfill_refs:
            self.tracker.asked_refs.add(ref)
        elif isinstance(request, Ping):
            self._ping_refs[ref] = time.monotonic()
        elif isinstance(request, Quit):
            self._closing = True
        frame = encode(request)
        if self._writer is not None and self.status is Status.ONLINE:
            self._writer.write(frame)
        elif not isinstance(request, Ping | Quit):
            self._pending.append(frame)
        return ref

    def ping(self) -> Ref:
        return self.send(Ping())

    def barrier(self) -> asyncio.Future[None]:
        """A future done when the server has answered everything sent before it.

        The server handles one connection's requests in order and answers in
        order, so the ``pong`` to a ping sent now comes after every earlier echo.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[self.ping()] = future
        return future

    async def start(self) -> Welcome:
        """The first connection: each server once, in order; raises ConnectError or HelloRefused.

        A refusal of us (``name_taken``, ``bad_password``, ...) ends it; a
        full server only sends us on to the next one.
        """
        return await self._round(0, refusals_final=True)

    async def run(self) -> str:
        """Read until the session ends; return the reason (``quit``, a bye reason, ...).

        Reconnects after a drop when the config says so, else raises ConnectionLost.
        """
        delays: Iterator[float] | None = None
        while True:
            reason = await self._read_loop()
            self._drop()
            if self._closing or reason in NO_RECONNECT_BYES:
                self._set_status(Status.CLOSED, reason)
                return reason
            if not self.config.reconnect:
                self._set_status(Status.CLOSED, reason)
                raise ConnectionLost(reason)
            delays = delays or backoff_delays(self.config.backoff_base, self.config.backoff_cap)
            while True:
                delay = next(delays)
                if self._hurry:  # /reconnect
                    self._hurry = False
                    delay = 0.0
                self._set_status(Status.OFFLINE, f"{reason}; retrying in {delay:.1f} s")
                self._wake.clear()
                if delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)  # or /reconnect
                    self._hurry = False
                if self._closing:
                    self._set_status(Status.CLOSED, "quit")
                    return "quit"
                self.resumed = True
                try:  # the next server first; the one that dropped us last
                    await self._round(self.server_index + 1, refusals_final=False)
                except (ConnectError, HelloRefused) as exc:
                    reason = str(exc)
                    continue
                delays = None
                self.reconnects += 1
                self._after_resume()
                break

    async def quit(self, reason: str | None = None, timeout: float = 2.0) -> None:
        """Say ``quit`` and wait briefly for the server's ``bye``."""
        self._closing = True
        if self._writer is None or self.status is not Status.ONLINE:
            self._drop()
            return
        self._writer.write(encode(Quit(reason=reason)))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.drain(), timeout)

    def close(self) -> None:
        self._closing = True
        self._drop()

    def reconnect_now(self) -> None:
        """Reconnect at once: cut a live connection (it resumes), or skip the backoff wait."""
        self._hurry = True
        if self.status is Status.ONLINE:
            self._abort()
        self._wake.set()

    async def keepalive(self) -> None:
        """Ping every ``ping_interval`` seconds for the latency, and to notice a dead link."""
        interval = self.config.ping_interval
        if interval <= 0:
            return
        while not self._closing:
            await asyncio.sleep(interval)
            if self.status is not Status.ONLINE:
                continue
            if self._ping_refs and time.monotonic() - self._last_pong > self.config.ping_timeout:
                self._abort()  # the read loop sees EOF and reconnects
                continue
            self.ping()

    # ------------------------------------------------------------------ internals

    def _set_status(self, status: Status, detail: str = "") -> None:
        self.status = status
        self.on_status(status, detail)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.config.cafile)
        if self.config.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _round(self, first: int, *, refusals_final: bool) -> Welcome:
        """Try every server once, from index ``first`` on, wrapping around.

        Returns the first welcome. When none welcomes us, raises the one
        server's error, or (several) a HelloRefused when each refused us and
        else a ConnectError naming every failure.
        """
        endpoints = self.config.endpoints
        failures: list[ConnectError | HelloRefused] = []
        for step in range(len(endpoints)):
            self.server_index = (first + step) % len(endpoints)
            self.skipped = [str(exc) for exc in failures]  # known when ONLINE is announced
            try:
                welcome = await self._connect()
            except ConnectError as exc:
                failures.append(exc)
            except HelloRefused as exc:
                if refusals_final and exc.code not in ELSEWHERE_REFUSALS:
                    raise
                several = len(endpoints) > 1  # then say which server refused
                where = f"{exc.message} ({self.address})" if several else exc.message
                failures.append(HelloRefused(exc.code, where))
            else:
                return welcome
        if len(failures) == 1:
            raise failures[0]
        if all(isinstance(exc, HelloRefused) for exc in failures):
            raise failures[-1]
        raise ConnectError("; ".join(str(exc) for exc in failures))

    async def _connect(self) -> Welcome:
        """One server (``config.endpoints[server_index]``): connect and say hello."""
        self.node = None
        self._set_status(Status.CONNECTING, self.address)
        host, port = self.config.endpoints[self.server_index]
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self._ssl_context()),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {self.address}: {_plain(exc)}") from None
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(max_frame=1 << 24)
        self._buffered = []
        writer.write(encode(self.tracker.hello(self.config)))
        try:
            while True:
                event = await asyncio.wait_for(self._next_event(), CONNECT_TIMEOUT)
                if event is None:
                    raise ConnectError(f"{self.address} closed the connection during hello")
                if isinstance(event, ErrorEvent):
                    if event.code in REFUSALS or event.code.startswith("bad_"):
                        raise HelloRefused(event.code, event.message)
                    continue
                if isinstance(event, Bye):
                    raise ConnectError(f"{self.address} said bye ({event.reason})")
                if isinstance(event, Welcome):
                    break
        except TimeoutError:
            self._drop()
            raise ConnectError(f"{self.address} did not answer hello") from None
        except BaseException:
            self._drop()
            raise
        self.welcome = event
        self.node = welcome_node(event)
        self._last_pong = time.monotonic()
        self._ping_refs.clear()
        self._set_status(Status.ONLINE, self.server_label)
        self._deliver(event)
        pending, self._pending = self._pending, []
        for frame in pending:
            writer.write(frame)
        return event

    def _after_resume(self) -> None:
        """Ask each room for its recent history: a restarted server may have renumbered."""
        for room in self.tracker.rooms:
            ref = self.next_ref()
            self.tracker.backfill_refs.add(ref)
            self.resume_refs.add(ref)
            self.send(History(room=room, limit=RESUME_HISTORY, ref=ref))

    async def _next_event(self) -> Event | None:
        """The next decodable event, or None at end of stream."""
        assert self._reader is not None
        while True:
            while self._buffered:
                payload = self._buffered.pop(0)
                if not payload:
                    continue  # keepalive frame
                try:
                    return parse_event(payload)
                except ProtocolError:
                    continue  # an event type from a newer server: ignore it
            try:
                data = await self._reader.read(1 << 16)
            except (OSError, ssl.SSLError):
                return None
            if not data:
                return None
            self._buffered.extend(self._decoder.feed(data))
            if self._decoder.error is not None and not self._buffered:
                return None

    async def _read_loop(self) -> str:
        reason = "connection lost"
        while True:
            event = await self._next_event()
            if event is None:
                return reason
            if isinstance(event, Bye):
                reason = event.reason
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if isinstance(event, Pong) and event.ref in self._ping_refs:
            sent = self._ping_refs.pop(event.ref)
            self._last_pong = time.monotonic()
            self.latency = self._last_pong - sent
            barrier = self._barriers.pop(event.ref, None)
            if barrier is not None and not barrier.done():
                barrier.set_result(None)
            self.on_status(self.status, "pong")
            return
        filtered = self.tracker.filter(event)
        if filtered is not None:
            self.on_event(filtered)

    def _abort(self) -> None:
        if self._writer is not None:
            transport: Any = self._writer.transport
            transport.abort()

    def _drop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self.status is Status.ONLINE:
            self.status = Status.OFFLINE


def _plain(exc: BaseException) -> str:
    """An OS error in plain words, without the errno prefix."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); see --cafile, --insecure"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


__all__ = [
    "ConnectError",
    "ConnectionLost",
    "HelloRefused",
    "Session",
    "SessionConfig",
    "Status",
    "Tracker",
    "backoff_delays",
    "format_address",
    "welcome_node",
]
