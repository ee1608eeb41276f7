"""Rooms, names, message ids and fan-out.

The hub owns every piece of shared state and is the only place that changes
it; connections call its methods with validated requests. It never awaits, so
each request is applied whole, in the order the event loop delivers them.

Fan-out encodes an event once per kind of client and appends the bytes to
each member's outbox; the outboxes of everyone touched in this event-loop turn
are flushed together by one callback, one ``write()`` per connection.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from . import __version__
from .encoding import encode_event
from .history import HistoryStore, HistoryUnavailable
from .log import LocalLog, LocalNames, MessageLog, NameRegistry
from .outbox import Pages, drain, enqueue, hold
from .protocol import (
    HEADER_LEN,
    PROTO_VERSION,
    AwayEvent,
    ClientKind,
    DmEvent,
    ErrorCode,
    ErrorEvent,
    Event,
    Hello,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Pong,
    ProtocolError,
    Ref,
    RoomInfo,
    RoomsReply,
    Welcome,
    WhoReply,
    encode_payload,
    name_key,
    now_ts,
)
from .protocol.jsoncodec import loads
from .ratelog import Throttle

if TYPE_CHECKING:
    from .config import Settings
    from .connection import Connection

log = logging.getLogger("chatserver")

_KINDS = tuple(ClientKind)

RETRY_FIRST = 0.25  # seconds messages are refused after a failed commit, doubling...
RETRY_MAX = 4.0  # ...up to this, until a commit works again
AWAY_DMS = 100  # direct messages kept for a user whose connection dropped
# Server-initiated closes after which the client is expected back (its name is kept).
GRACE_BYES = frozenset({"slow_consumer", "idle"})
# Hellos handled per loop turn; later ones wait in a queue, in order (their
# reading paused). In a storm of them (a restart: thousands at once) turns
# were 20-30 ms each, back to back, and every message of the members already
# in waited for them; with 32, under 25 ms. 64 brought those turns back
# (docs/performance.md).
HELLOS_PER_TURN = 32
HELLO_TURN_SECONDS = 0.005  # hellos a turn takes on, after its first
_MSG = b'{"type":"msg","id":'  # how a JSON msg begins (messages._msg_obj's order)


class Room:
    """A room's members, grouped by the kind of bytes they are sent.

    ``members`` are this process's connections; ``remote``, in a cluster, the
    members connected to other processes (name key -> name), sent nothing here.
    ``quiet``: past ``--quiet-room-size`` members, joins and leaves are told
    only to whoever joins or leaves (Hub._joined, Hub._left).
    """

    __slots__ = ("by_kind", "members", "name", "quiet", "remote")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Connection, None] = {}  # an ordered set
        self.by_kind: tuple[dict[Connection, None], ...] = tuple({} for _ in _KINDS)
        self.remote: dict[str, str] = {}
        self.quiet = False

    def size(self) -> int:
        return len(self.members) + len(self.remote)

    def add(self, conn: Connection) -> None:
        self.members[conn] = None
        self.by_kind[conn.kind][conn] = None

    def remove(self, conn: Connection) -> None:
        self.members.pop(conn, None)
        self.by_kind[conn.kind].pop(conn, None)


class RemoteUser:
    """A user connected to another process of the cluster, as the log told us."""

    __slots__ = ("name", "node", "rooms")

    def __init__(self, name: str, node: str, rooms: Iterable[str]) -> None:
        self.name = name
        self.node = node
        self.rooms: dict[str, None] = dict.fromkeys(rooms)


class Hub:
    def __init__(
        self,
        settings: Settings,
        store: HistoryStore,
        loop: asyncio.AbstractEventLoop,
        log: MessageLog | None = None,
        names: NameRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.node = settings.node or ""  # welcome.node (the server sets the default)
        # The seams of shared state (log.py): local ones apply within the
        # request; a cluster's come back through the shared log.
        self.log: MessageLog = log if log is not None else LocalLog(store)
        self.names: NameRegistry = names if names is not None else LocalNames(self)
        for seam in (self.log, self.names):
            bind = getattr(seam, "bind", None)
            if bind is not None:
                bind(self)
        self._call_soon = loop.call_soon
        self._time = loop.time
        # With a durable store, output waits for the commit of the messages in
        # it (persist, then fan out): one batch commits while the next grows.
        # (In a cluster the log is what must have it first; the store is each
        # process's archive of the log, written behind.)
        self._durable = store.durable and not self.log.shared
        self._committing = False
        self._closes: list[tuple[Connection, bytes]] = []  # closes waiting for a commit
        self.closer = self._defer_close if self._durable else None
        # Backpressure: while a commit runs, input stops once the next batch
        # holds a quarter of --sendq (so one batch never makes a reader slow).
        self.holding = False
        self._accepted = 0
        self._hold_after = settings.sendq // 4
        self._waiters: list[Callable[[], None]] = []
        # The messages whose bytes wait for the commit (a failed one takes them back).
        # Outbox lists moved behind a reply this turn (a failed commit looks
        # there too for its messages: they hold bytes of this turn).
        self._held: list[tuple[Connection, list[bytes]]] = []
        self._down_since: float | None = None  # the store failed a commit then
        self._retry_at = 0.0  # messages are refused until then
        self._backoff = RETRY_FIRST
        self._refused = 0
        self._write_failures = Throttle()  # the first at once, then a line a minute
        self.users: dict[str, Connection] = {}  # name key -> connection, this process's
        self.remote: dict[str, RemoteUser] = {}  # name key -> user on another process
        self.rooms: dict[str, Room] = {}
        self._room_names: list[str] = []  # the keys of rooms, sorted: `rooms` pages it
        # Users whose connection dropped: their name and rooms kept for their
        # session token until the timer runs out, and the DMs sent meanwhile.
        self._away: dict[Connection, tuple[asyncio.TimerHandle, str, list[DmEvent]]] = {}
        self._call_later = loop.call_later
        self._dirty: list[Connection] = []  # outboxes with bytes waiting for the flush
        # A join notice to every member makes a room's filling quadratic: 5 000
        # joiners were 12.5 M notices. Past this size a room goes quiet; it
        # is loud again at half of it, so one member coming and going at the
        # edge cannot make it flap (docs/protocol.md, "Quiet rooms").
        self._quiet_size = settings.quiet_room_size
        self._hellos = 0  # hellos since the last flush (HELLOS_PER_TURN)
        self._hellos_since = 0.0  # when the first of them began
        # (room, bound, kind) -> (until, frames): the join backlog (_replay_pages).
        self._replays: dict[tuple[str, int, ClientKind], tuple[float, list[bytes]]] = {}
        self._hello_queue: deque[Callable[[], None]] = deque()  # hellos for later turns, in order
        self._releasing = False
        self.limits = {
            "max_frame": settings.max_frame,
            "max_text": settings.max_text,
            "rate": settings.msg_rate,
            "burst": settings.msg_burst,
        }

    # ------------------------------------------------------------------
    # Output

    def send(self, conn: Connection, data: bytes) -> None:
        """Queue bytes for one connection; they go out at the end of this turn."""
        out = conn.out
        if not out:
            if not self._dirty:
                self._schedule_flush()
            self._dirty.append(conn)
        out.append(data)

    def send_event(self, conn: Connection, event: Event) -> None:
        self.send(conn, encode_event(event, conn.kind, conn.name))

    def send_error(self, conn: Connection, code: ErrorCode, message: str, ref: Ref = None) -> None:
        self.send_event(conn, ErrorEvent(code=code.value, message=message, ref=ref))

    def send_pages(self, conn: Connection, pages: Pages) -> None:
        """A reply made page by page as the client reads it (outbox.py)."""
        if conn.out and self._durable:
            self._held.append((conn, conn.out))
        enqueue(conn, pages)
        self.wake(conn)

    def wake(self, conn: Connection) -> None:
        """Have this connection's queue looked at by the next flush."""
        if not self._dirty and not self._closes:
            self._schedule_flush()
        self._dirty.append(conn)

    def broadcast(self, room: Room, event: Event) -> None:
        """Send one event to every member of a room, encoded once per kind."""
        dirty = self._dirty
        if not dirty:
            self._schedule_flush()
        for kind, members in enumerate(room.by_kind):
            if not members:
                continue
            data = encode_event(event, _KINDS[kind])
            for conn in members:
                out = conn.out
                if not out:
                    dirty.append(conn)
                out.append(data)

    def _schedule_flush(self) -> None:
        """Flush at the end of this event-loop turn.

        (Spacing flushes out to make each write carry more was measured and
        dropped: it saved CPU in a big room but multiplied p99 latency at
        every load below saturation; docs/performance.md.)
        """
        self._call_soon(self.flush)

    def flush(self) -> None:
        """Write every waiting outbox: one write per connection per turn.

        With a durable store and new ids since the last commit, the store
        commits first. One that commits on this thread is done at once; for
        one that commits on its writer thread, the bytes are cut into a batch
        that is written when the commit is done, while the next batch grows.
        A commit that fails takes its messages back out of every outbox: the
        senders are answered ``unavailable`` instead (persist, then fan out).
        """
        self._hellos = 0  # a new turn: hellos may be handled again
        if self._committing:
            return  # _committed flushes what waits meanwhile
        dirty = self._dirty
        closes = self._closes
        if not dirty and not closes:
            return
        self._dirty = []
        self._closes = []
        held, self._held = self._held, []  # this turn's, whether a commit is due or not
        store = self.store
        if self._durable and store.has_pending():
            if not store.inline:
                self._committing = True
                self._accepted = 0
                batch = self._cut(dirty, held)
                store.commit(lambda error: self._committed(batch, closes, held, error))
                return
            result: list[BaseException | None] = []
            store.commit(result.append)  # on disk when it returns: now the bytes may go
            if result[0] is not None:
                self._failed([(conn, conn.out) for conn in dirty] + held, result[0])
            elif self._down_since is not None:
                self._recovered()
        self._write_out(dirty)
        for conn, last in closes:
            conn.finish_close(last)

    def _cut(
        self, dirty: list[Connection], held: list[tuple[Connection, list[bytes]]]
    ) -> list[tuple[Connection, list[bytes] | int]]:
        """The bytes of this turn, to be written once they are on disk: each
        connection's outbox, or how many entries of its queue may go."""
        batch: list[tuple[Connection, list[bytes] | int]] = []
        queued: set[Connection] = set()
        for conn in dirty:
            if conn.queue is not None:
                if conn not in queued:
                    queued.add(conn)
                    if conn.out:
                        held.append((conn, conn.out))
                    hold(conn)
                    batch.append((conn, len(conn.queue)))
            elif conn.out:
                batch.append((conn, conn.out))
                conn.out = []
        return batch

    def _committed(
        self,
        batch: list[tuple[Connection, list[bytes] | int]],
        closes: list[tuple[Connection, bytes]],
        held: list[tuple[Connection, list[bytes]]],
        error: BaseException | None,
    ) -> None:
        self._committing = False
        if error is not None:
            outboxes = [(conn, item) for conn, item in batch if type(item) is list]
            self._failed(outboxes + held, error)  # type: ignore[arg-type]
        elif self._down_since is not None:
            self._recovered()
        for conn, item in batch:
            if type(item) is list:
                if item:
                    self._write(conn, item[0] if len(item) == 1 else b"".join(item))
            else:
                self._drain(conn, item)  # type: ignore[arg-type]
        for conn, last in closes:
            conn.finish_close(last)
        if self._dirty or self._closes:
            self._schedule_flush()
        self.release_held()

    def after_commit(self, release: Callable[[], None]) -> None:
        """Call ``release`` when the running commit is done (see ``holding``)."""
        self._waiters.append(release)

    def release_held(self) -> None:
        """Input may go on: the commit (or the shared log) caught up."""
        self.holding = False
        waiters, self._waiters = self._waiters, []
        for release in waiters:
            release()

    def _defer_close(self, conn: Connection, last: bytes) -> bool:
        """A close while output waits for a commit waits too, so its last bytes
        keep their order and are sent only once they are on disk."""
        if not (self._committing or self.store.has_pending()):
            return False
        if not self._dirty and not self._closes:
            self._schedule_flush()
        self._closes.append((conn, last))
        return True

    def _write(self, conn: Connection, data: bytes) -> None:
        transport = conn.transport
        if transport.is_closing():
            return
        transport.write(data)
        unsent = transport.get_write_buffer_size()
        if unsent - len(data) > self.settings.sendq:
            self._slow(conn, unsent)

    def _write_out(self, dirty: list[Connection]) -> None:
        sendq = self.settings.sendq
        for conn in dirty:
            if conn.queue is not None:
                hold(conn)
                self._drain(conn)
                continue
            out = conn.out
            if not out:
                continue
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport = conn.transport
            if transport.is_closing():
                # The peer went away; its task has not seen the EOF yet. (uvloop
                # raises on a write to a closed transport, which would end this
                # loop and strand everyone else's bytes.)
                continue
            transport.write(data)
            # Slow: what it was sent before this write is still unsent. (A
            # single write may be large: a batch that waited for a commit.)
            unsent = transport.get_write_buffer_size()
            if unsent - len(data) > sendq:
                self._slow(conn, unsent)

    def _drain(self, conn: Connection, segments: int | None = None) -> None:
        """Write a connection's queue as far as it may go now (outbox.py)."""
        if drain(conn, segments):
            self.wake(conn)  # pages left and the transport keeps up: next turn
        if conn.queue is None or conn.closing:
            return
        # What waits behind a reply counts toward the sendq with what the
        # transport holds: a client that does not read cannot grow either.
        unsent = conn.held + conn.transport.get_write_buffer_size()
        if unsent > self.settings.sendq:
            self._slow(conn, unsent)

    def _slow(self, conn: Connection, unsent: int) -> None:
        log.info("%s: slow consumer, %d bytes unsent", conn, unsent)
        self.drop(conn, "slow_consumer", "slow consumer")

    # ------------------------------------------------------------------
    # A history store that cannot be written

    def _failed(self, outboxes: list[tuple[Connection, list[bytes]]], error: BaseException) -> None:
        """A commit failed: none of its messages may reach anyone. Take them
        out of the outboxes of this turn, answer each sender ``unavailable``
        in its echo's place, and refuse new messages for a while (doubling up
        to a few seconds) before the store is tried again.

        Its messages are found by their bytes (encoding is deterministic, and
        a JSON copy names its id), so that the hot path keeps no record of
        what it sent: only this turn's bytes are looked at, all of them from
        this commit."""
        failed = self.store.take_failed()
        self._replays.clear()  # a backlog made meanwhile may hold them
        now = self._time()
        if self._down_since is None:
            self._down_since = now
            self._backoff = RETRY_FIRST
            self._refused = 0
            self._write_failures.log(
                logging.ERROR,
                "history: cannot write %s (%s); messages are refused (unavailable)"
                " until it works again",
                getattr(self.store, "path", "the store"),
                error,
            )
        else:
            self._backoff = min(self._backoff * 2, RETRY_MAX)
            self._write_failures.log(
                logging.ERROR,
                "history: still cannot write (%s) after %.0f s; %d messages refused",
                error,
                now - self._down_since,
                self._refused + len(failed),
            )
        self._retry_at = now + self._backoff
        self._refused += len(failed)
        if not failed:
            return
        by_bytes: dict[bytes, MsgEvent] = {}
        by_id: dict[int, MsgEvent] = {}
        for msg in failed:
            by_id[msg.id] = msg
            for kind in _KINDS:
                by_bytes[encode_event(msg, kind)] = msg
        answered: set[tuple[Connection, int]] = set()  # each sender is answered once

        def refused(conn: Connection, segment: list[bytes]) -> None:
            kept = []
            for data in segment:
                msg = by_bytes.get(data)
                ref: Ref = None
                if msg is None and data[HEADER_LEN : HEADER_LEN + len(_MSG)] == _MSG:
                    obj = loads(data[HEADER_LEN:])  # the sender's copy, with its ref
                    msg = by_id.get(obj["id"])
                    ref = obj.get("ref")
                if msg is None:
                    kept.append(data)
                elif msg.from_ == conn.name and (conn, msg.id) not in answered:
                    answered.add((conn, msg.id))
                    error = ErrorEvent(
                        code=ErrorCode.UNAVAILABLE.value,
                        message="the history cannot be written now: not sent; try again later",
                        ref=ref,
                    )
                    kept.append(encode_event(error, conn.kind, conn.name))
            segment[:] = kept

        for conn, segment in outboxes:
            refused(conn, segment)
        for conn in {conn for conn, _ in outboxes if conn.queue is not None}:
            conn.held = sum(len(b) for seg in conn.queue if type(seg) is list for b in seg)

    def _recovered(self) -> None:
        log.warning(
            "history: writing again after %.1f s; %d messages were refused meanwhile",
            self._time() - (self._down_since or 0.0),
            self._refused,
        )
        self._down_since = None
        self._retry_at = 0.0
        self._write_failures.reset()

    def _check_writable(self) -> None:
        """While the store is failing, messages are refused until the next try."""
        if self._time() < self._retry_at:
            self._refused += 1
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "the history cannot be written now: try again later"
            )

    # ------------------------------------------------------------------
    # Membership

    def hello(self, conn: Connection, hello: Hello) -> None:
        """Register a connection under its name and join its rooms.

        Raises ProtocolError (fatal for the caller) when the name is refused
        at once; a cluster's registry may refuse later (``refused_hello``).
        """
        if self._hellos == 0:
            self._hellos_since = time.perf_counter()
        self._hellos += 1
        if conn.kind is ClientKind.JSON:
            conn.session = secrets.token_urlsafe(24)
        self.names.claim(conn, hello)  # it checks --max-rooms with the rooms kept

    def may_hello(self) -> bool:
        """Whether another hello fits in this turn (else it waits: ``wait_hello``)."""
        # The one being released goes ahead of those still queued behind it.
        return self._hello_fits() and (self._releasing or not self._hello_queue)

    def _hello_fits(self) -> bool:
        # By count, and by time: a resume's replay reads and encodes pages of
        # history, so ten of them in one turn stall everyone else's messages.
        return self._hellos == 0 or (
            self._hellos < HELLOS_PER_TURN
            and time.perf_counter() - self._hellos_since < HELLO_TURN_SECONDS
        )

    def wait_hello(self, release: Callable[[], None]) -> None:
        """Call ``release`` in a later turn, after the hellos that wait before it."""
        if not self._hello_queue:
            self._call_soon(self._next_hellos)
        self._hello_queue.append(release)

    def _next_hellos(self) -> None:
        """A turn's share of the waiting hellos (one queue: each is looked at
        once, not woken every turn to find the budget spent again)."""
        self._hellos = 0
        queue = self._hello_queue
        self._releasing = True
        try:
            while queue and self._hello_fits():
                queue.popleft()()
        finally:
            self._releasing = False
        if queue:
            self._call_soon(self._next_hellos)

    @staticmethod
    def same_session(held: str | None, given: str | None) -> bool:
        """Whether ``given`` is the session token of the name's holder."""
        return bool(held and given and secrets.compare_digest(held.encode(), given.encode()))

    def taken_message(self, name: str, ghost: Connection | None = None) -> str:
        away = self._away.get(ghost) if ghost is not None else None
        if away is not None:
            return f"the name {name} is kept for its owner for a while ({away[1]})"
        return f"the name {name} is taken"

    def check_rooms(self, kept: list[str], hello: Hello) -> None:
        wanted = sum(1 for r in hello.rooms if r not in kept)
        if len(kept) + wanted > self.settings.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms a client"
            )

    def refused_hello(self, conn: Connection, error: ProtocolError, ref: Ref) -> None:
        """The registry refused the name after all (a cluster answers later)."""
        log.info("%s: hello refused: %s", conn, error)
        conn.session = None
        conn.close(error=ErrorEvent(code=error.code.value, message=error.message, ref=ref))

    def claimed(
        self,
        conn: Connection,
        hello: Hello,
        key: str,
        kept: list[str],
        ghost: Connection | None,
        ts: str | None = None,
    ) -> None:
        """The name is ``conn``'s: welcome it, give it its rooms and their history.

        ``kept`` are the rooms it had (a take-over with its session token):
        nobody sees a leave or join for those. ``ghost`` is the connection it
        takes over, when that one is on this process.
        """
        ts = ts or now_ts()
        wanted = [r for r in hello.rooms if r not in kept]
        conn.name = hello.name
        conn.key = key
        self.users[key] = conn
        waiting: list[DmEvent] = []
        if ghost is not None:
            waiting = self._take_over(ghost, conn)
        moved = self.remote.pop(key, None)
        for room_name in kept:  # held on another process until now
            if room_name not in conn.rooms:
                room = self._room(room_name)
                room.remote.pop(key, None)
                room.add(conn)
                conn.rooms[room_name] = None
        if moved is not None:
            log.info("%s: taken over from %s", conn, moved.node)
        self.send_event(
            conn,
            Welcome(
                name=conn.name,
                proto=PROTO_VERSION,
                server=f"chatserver/{__version__}",
                rooms=kept + wanted,
                limits=self.limits,
                session=conn.session,
                motd=self.settings.motd,
                ref=hello.ref,
                node=self.node or None,
            ),
        )
        for event in waiting:  # sent while it was away, oldest first
            self.send_event(conn, event)
        for room in kept:
            self.send_event(conn, self._own_join(self.rooms[room], conn.name, ts))
            self._replay(conn, room, hello.since.get(room), None)
        for room in wanted:
            self._add_member(conn, room, ts)
            self._replay(conn, room, hello.since.get(room), None)

    def delivered_online(
        self, key: str, name: str, node: str, kept: list[str], joined: list[str], ts: str
    ) -> None:
        """A user came online on another process (or took its name over there)."""
        ghost = self.users.get(key)
        if ghost is not None:
            self._detach(ghost)
            ghost.close("replaced")
        user = self.remote.get(key)
        if user is None:
            user = self.remote[key] = RemoteUser(name, node, ())
        user.name = name
        user.node = node
        for room_name in kept:
            self._room(room_name).remote[key] = name
            user.rooms[room_name] = None
        for room_name in joined:
            room = self._room(room_name)
            room.remote[key] = name
            user.rooms[room_name] = None
            self._joined(room, name, ts, None)

    def _detach(self, conn: Connection) -> None:
        """Forget a connection without a word to anyone (its name lives on elsewhere)."""
        away = self._away.pop(conn, None)
        if away is not None:
            away[0].cancel()
        if conn.key is not None and self.users.get(conn.key) is conn:
            del self.users[conn.key]
        conn.key = None
        for room_name in conn.rooms:
            room = self.rooms.get(room_name)
            if room is not None:
                room.remove(conn)
                if not room.size():
                    self._forget_room(room_name)
        conn.rooms.clear()
        log.info("%s: replaced on another server", conn)

    def _take_over(self, ghost: Connection, conn: Connection) -> list[DmEvent]:
        """The same user on a new connection: rooms move over, nobody sees a
        leave/join. Returns the direct messages it was sent while away."""
        away = self._away.pop(ghost, None)
        for room_name in ghost.rooms:
            room = self.rooms[room_name]
            room.remove(ghost)
            room.add(conn)
            conn.rooms[room_name] = None
            if away is not None and not room.quiet:
                self._notice(room, AwayEvent(name=conn.name, text="", ts=now_ts()))
        ghost.rooms.clear()
        ghost.key = None  # detach, so its disconnect touches nothing
        log.info("%s: replaced by %s", ghost, conn)
        ghost.close("replaced")
        if away is None:
            return []
        away[0].cancel()
        return away[2]

    def _notice(self, room: Room, event: Event) -> None:
        """An event of version 2 to a room: its version-1 JSON members are not sent it."""
        for kind, members in enumerate(room.by_kind):
            if members and _KINDS[kind] is not ClientKind.JSON:
                data = encode_event(event, _KINDS[kind])
                for conn in members:
                    self.send(conn, data)

    # ------------------------------------------------------------------
    # A name kept for a user whose connection dropped

    def connection_lost(self, conn: Connection) -> None:
        """The connection ended without quit: keep its name and rooms for its
        session token a while (``--name-grace``), or forget it now."""
        if conn.key is None or conn in self._away:
            return
        if self._may_keep(conn):
            self._keep_away(conn, "connection lost")
        else:
            self.disconnect(conn, "disconnected")

    def _may_keep(self, conn: Connection) -> bool:
        """A registered connection with a token to come back with, not away yet."""
        return (
            conn.session is not None
            and self.settings.name_grace > 0
            and conn.key is not None
            and conn not in self._away
        )

    def _keep_away(self, conn: Connection, why: str) -> None:
        """Nobody else may take the name meanwhile (a DM meant for it would go
        to the impostor); the rooms see it away, and it is sent nothing."""
        timer = self._call_later(self.settings.name_grace, self._away_expired, conn)
        self._away[conn] = (timer, why, [])
        event = AwayEvent(name=conn.name, text=why, ts=now_ts())
        for room_name in conn.rooms:
            room = self.rooms[room_name]
            room.by_kind[conn.kind].pop(conn, None)  # still a member, sent nothing
            if not room.quiet:  # a quiet room's `who` shows who is away
                self._notice(room, event)
        log.info("%s: away, the name is kept for %ss", conn, self.settings.name_grace)

    def _away_expired(self, conn: Connection) -> None:
        away = self._away.pop(conn, None)
        if away is not None:
            log.info("%s: did not come back; the name is free", conn)
            self.disconnect(conn, away[1])

    def _room(self, room_name: str) -> Room:
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(room_name)
            bisect.insort(self._room_names, room_name)
        return room

    def _add_member(self, conn: Connection, room_name: str, ts: str | None = None) -> None:
        room = self._room(room_name)
        if room.remote and conn.key is not None:
            room.remote.pop(conn.key, None)
        room.add(conn)
        conn.rooms[room_name] = None
        self._joined(room, conn.name, ts or now_ts(), conn)

    def _own_join(self, room: Room, name: str, ts: str) -> JoinEvent:
        """The joiner's own ``join``: with the room's size, and whether it is quiet."""
        return JoinEvent(room.name, name, ts, room.size(), True if room.quiet else None)

    def _joined(self, room: Room, name: str, ts: str, joiner: Connection | None) -> None:
        """Tell a join (its member already added): to every member while the
        room is small; the join that makes it quiet is the last one they are
        told (with ``quiet``); after it, only the joiner hears of its join."""
        if room.quiet:
            if joiner is not None:
                self.send_event(joiner, self._own_join(room, name, ts))
            return
        size = room.size()
        if self._quiet_size and size > self._quiet_size:
            room.quiet = True
            self.broadcast(room, JoinEvent(room.name, name, ts, size, True))
            return
        self.broadcast(room, JoinEvent(room.name, name, ts, size))

    def _left(self, room: Room, event: LeaveEvent) -> None:
        """Tell the remaining members of a leave (its member already removed).
        A quiet room tells nobody, until it is down to half its quiet size:
        then every member is sent the list (``who``), and notices resume."""
        if not room.quiet:
            self.broadcast(room, event)
        elif room.size() <= self._quiet_size // 2:
            room.quiet = False
            self.broadcast(room, self._who_reply(room, None))

    def _remove_member(
        self, conn: Connection, room_name: str, reason: str, *, tell_leaver: bool
    ) -> None:
        room = self.rooms[room_name]
        room.remove(conn)
        del conn.rooms[room_name]
        size = room.size()
        event = LeaveEvent(room_name, conn.name, now_ts(), reason, size)
        if tell_leaver:
            self.send_event(conn, event)
        if not size:
            self._forget_room(room_name)
        else:
            self._left(room, event)

    def _remove_remote(self, key: str, name: str, room_name: str, reason: str) -> None:
        room = self.rooms.get(room_name)
        if room is None or room.remote.pop(key, None) is None:
            return
        user = self.remote.get(key)
        if user is not None:
            user.rooms.pop(room_name, None)
        size = room.size()
        if not size:
            self._forget_room(room_name)
        else:
            self._left(room, LeaveEvent(room_name, name, now_ts(), reason, size))

    def _forget_room(self, room_name: str) -> None:
        del self.rooms[room_name]
        names = self._room_names
        del names[bisect.bisect_left(names, room_name)]

    def disconnect(self, conn: Connection, reason: str) -> None:
        """Forget a connection: leave events to its rooms. Safe to call twice."""
        if conn.key is None:
            return
        away = self._away.pop(conn, None)
        if away is not None:
            away[0].cancel()
        self.names.release(conn, reason)

    def hand_off(self, conn: Connection, node: str) -> None:
        """A connection gone whose name the shared log still holds: until the
        log's release comes back, it is a member as if held elsewhere."""
        key = conn.key
        assert key is not None
        if self.users.get(key) is conn:
            del self.users[key]
        self.remote[key] = RemoteUser(conn.name, node, conn.rooms)
        for room_name in conn.rooms:
            room = self.rooms[room_name]
            room.remove(conn)
            room.remote[key] = conn.name
        conn.rooms = {}
        conn.key = None

    def answered(self, conn: Connection) -> None:
        """A request of ``conn`` is back from the shared log: it may go on."""
        conn.wait -= 1
        if not conn.wait and conn.on_ready is not None:
            ready, conn.on_ready = conn.on_ready, None
            self._call_soon(ready)

    def gap(self, upto: int) -> None:
        """Entries of the shared log before ``upto`` never reached this process:
        everyone here is told, room by room, that what they saw is not whole."""
        for room in self.rooms.values():
            if room.members:
                self.broadcast(room, HistoryReply(room.name, [], False, gap=True))

    def released(self, key: str, name: str, rooms: list[str], reason: str) -> None:
        """A name given up (its connection gone): its rooms are told ``reason``."""
        conn = self.users.get(key)
        if conn is not None and conn.name == name:
            del self.users[key]
            conn.key = None
            for room_name in list(conn.rooms):
                self._remove_member(conn, room_name, reason, tell_leaver=False)
            return
        user = self.remote.pop(key, None)
        for room_name in rooms if user is None else list(user.rooms):
            self._remove_remote(key, name, room_name, reason)

    def drop(self, conn: Connection, bye: str, reason: str) -> None:
        """Close a connection on the server's initiative, telling its rooms why.
        A client that will be back (slow, idle) keeps its name a while."""
        if bye in GRACE_BYES and self._may_keep(conn):
            self._keep_away(conn, reason)
        else:
            self.disconnect(conn, reason)
        conn.close(bye)

    # ------------------------------------------------------------------
    # Requests

    def _member_room(self, conn: Connection, room: str | None) -> str:
        if room is None:
            room = conn.current_room()
            if room is None:
                raise ProtocolError(ErrorCode.NOT_IN_ROOM, "you are in no room; /join one first")
        if room not in conn.rooms:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in {room}")
        return room

    def say(self, conn: Connection, text: str, room: str | None, action: bool, ref: Ref) -> None:
        if self._retry_at:
            self._check_writable()
        self.log.say(conn, self._member_room(conn, room), text, action, ref)

    def delivered_msg(self, msg: MsgEvent, origin: Connection | None, ref: Ref) -> None:
        """A message the log has: to every member here, the sender's copy with its ref."""
        room = self.rooms.get(msg.room)
        if room is None:
            return  # nobody here is in it
        self._accepted += len(msg.text) + 200  # about the bytes each member is sent
        if self._committing and self._accepted >= self._hold_after:
            self.holding = True
        self.broadcast(room, msg)
        if ref is not None and origin is not None and msg.room in origin.rooms and origin.out:
            # The sender's copy carries its ref; the broadcast just appended the
            # plain copy last to the sender's outbox, so swap that one.
            origin.out[-1] = encode_event(
                MsgEvent(msg.id, msg.ts, msg.room, msg.from_, msg.text, msg.action, ref),
                origin.kind,
            )

    def dm(self, conn: Connection, to: str, text: str, action: bool, ref: Ref) -> None:
        key = name_key(to)
        target = self.users.get(key)
        if target is not None:
            away = self._away.get(target)
            if away is not None and len(away[2]) >= AWAY_DMS:
                raise ProtocolError(
                    ErrorCode.UNAVAILABLE,
                    f"{target.name} is away, with {AWAY_DMS} messages waiting",
                )
            to = target.name
        else:
            user = self.remote.get(key)
            if user is None:
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"nobody called {to}")
            to = user.name
        self.log.dm(conn, key, to, text, action, ref)

    def delivered_dm(self, event: DmEvent, key: str, origin: Connection | None, ref: Ref) -> None:
        """A direct message the log has: to its addressee if here, and the sender's copy."""
        target = self.users.get(key)
        if target is not None:
            away = self._away.get(target)
            if away is not None:
                away[2].append(event)  # delivered when it comes back
                if origin is not None and origin.kind is not ClientKind.JSON:
                    self.send_event(origin, AwayEvent(name=target.name, text=away[1], ts=event.ts))
            elif target is not origin:
                self.send_event(target, event)
        if origin is not None and origin.key is not None:
            e = event
            self.send_event(origin, DmEvent(e.id, e.ts, e.from_, e.to, e.text, e.action, ref))

    def join(self, conn: Connection, room: str, ref: Ref) -> None:
        if room in conn.rooms:
            # Already there: make it the current room and answer as a join would.
            del conn.rooms[room]
            conn.rooms[room] = None
            self.send_event(conn, self._own_join(self.rooms[room], conn.name, now_ts()))
            self._replay(conn, room, None, ref)
            return
        if len(conn.rooms) >= self.settings.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms a client"
            )
        self.log.join(conn, room, ref)

    def delivered_join(
        self, room: str, key: str, name: str, origin: Connection | None, ref: Ref, ts: str = ""
    ) -> None:
        if origin is not None:
            if origin.key is None or room in origin.rooms:
                return  # gone meanwhile (its release follows in the log)
            self._add_member(origin, room, ts)
            self._replay(origin, room, None, ref)
            return
        if key in self.users:
            return  # ours: it came with its origin
        r = self._room(room)
        r.remote[key] = name
        user = self.remote.get(key)
        if user is not None:
            user.rooms[room] = None
        self._joined(r, name, ts or now_ts(), None)

    def leave(self, conn: Connection, room: str | None, reason: str | None) -> None:
        self.log.leave(conn, self._member_room(conn, room), reason or "")

    def delivered_leave(self, room: str, key: str, name: str, reason: str) -> None:
        conn = self.users.get(key)
        if conn is not None:
            if room in conn.rooms:
                self._remove_member(conn, room, reason, tell_leaver=True)
            return
        self._remove_remote(key, name, room, reason)

    def nick(self, conn: Connection, new: str) -> None:
        if new == conn.name:
            return
        self.names.rename(conn, new)

    def renamed(self, old_key: str, new_key: str, old: str, new: str) -> None:
        """A name changed: everyone here who shares a room with it is told."""
        event = NickEvent(old=old, new=new, ts=now_ts())
        conn = self.users.get(old_key)
        if conn is not None and conn.name == old:
            del self.users[old_key]
            self.users[new_key] = conn
            conn.key = new_key
            conn.name = new
            peers: Iterable[Connection] = self._peers(conn)
        else:
            user = self.remote.pop(old_key, None)
            if user is None:
                return
            user.name = new
            self.remote[new_key] = user
            seen: dict[Connection, None] = {}
            for room_name in user.rooms:
                room = self.rooms.get(room_name)
                if room is not None:
                    room.remote.pop(old_key, None)
                    room.remote[new_key] = new
                    seen.update(room.members)
            peers = seen
        for peer in peers:
            self.send_event(peer, event)

    def _peers(self, conn: Connection) -> Iterable[Connection]:
        """Everyone who shares a room with conn, and conn itself, once each."""
        seen = {conn: None}
        for room_name in conn.rooms:
            seen.update(self.rooms[room_name].members)
        return seen

    def who(self, conn: Connection, room: str | None, ref: Ref) -> None:
        if room is None:
            room = self._member_room(conn, None)
        room_obj = self.rooms.get(room)
        if room_obj is None:
            raise ProtocolError(ErrorCode.NO_SUCH_ROOM, f"there is no room {room}")
        self.send_event(conn, self._who_reply(room_obj, ref))

    def _who_reply(self, room: Room, ref: Ref) -> WhoReply:
        names = [m.name for m in room.members]
        names += room.remote.values()
        names.sort(key=str.casefold)
        away = {m.name: self._away[m][1] for m in room.members if m in self._away}
        quiet = True if room.quiet else None
        return WhoReply(room.name, names, ref, away or None, len(names), quiet)

    def list_rooms(self, conn: Connection, after: str | None, limit: int, ref: Ref) -> None:
        self.send_pages(conn, self._rooms_pages(conn, after, limit, ref))

    def _rooms_pages(
        self, conn: Connection, after: str | None, limit: int, ref: Ref
    ) -> Iterator[bytes]:
        """One page of the room list, in name order, within one frame."""
        names = self._room_names
        start = 0 if after is None else bisect.bisect_right(names, after)
        budget = self.settings.max_frame - 512
        infos = []
        size = 0
        end = start
        while end < len(names) and len(infos) < limit:
            room = self.rooms[names[end]]
            entry = len(room.name.encode()) + 40  # {"name": ..., "members": N}, escapes aside
            if size + entry > budget:
                break
            size += entry
            infos.append(RoomInfo(name=room.name, members=room.size()))
            end += 1
        yield encode_event(
            RoomsReply(rooms=infos, more=end < len(names), ref=ref), conn.kind, conn.name
        )

    def history(
        self, conn: Connection, room: str | None, before: int | None, limit: int, ref: Ref
    ) -> None:
        room = self._member_room(conn, room)
        # Made when the client is ready for it, of the messages there are now.
        bound = before if before is not None else self.store.last_id() + 1
        self.send_pages(conn, self._history_pages(conn, room, bound, limit, ref))

    def _history_pages(
        self, conn: Connection, room: str, before: int, limit: int, ref: Ref
    ) -> Iterator[bytes]:
        """One ``history`` reply within one frame: the newest ``limit`` before
        ``before`` that fit, read a few at a time (what cannot fit is never read)."""
        budget = self.settings.max_frame - 512
        newest_first: list[MsgEvent] = []
        size = 0
        more = False
        try:
            while len(newest_first) < limit:
                msgs, older = self.store.page(
                    room, before, min(REPLAY_READ, limit - len(newest_first))
                )
                for i in range(len(msgs) - 1, -1, -1):
                    msg_size = _msg_size(msgs[i])
                    if size + msg_size > budget:
                        more = True  # this one and older did not fit
                        break
                    size += msg_size
                    newest_first.append(msgs[i])
                else:
                    more = older
                    if msgs and older:
                        before = msgs[0].id
                        continue
                break
        except HistoryUnavailable as exc:
            yield self._unavailable(conn, exc, ref)
            return
        newest_first.reverse()
        yield encode_event(
            HistoryReply(room=room, messages=newest_first, more=more, ref=ref), conn.kind
        )

    def _replay(self, conn: Connection, room: str, since: int | None, ref: Ref) -> None:
        """History for a joiner: the backlog, or what it missed since ``since``,
        as of now (what comes later reaches it live), made as it reads."""
        bound = self.store.last_id() + 1
        self.send_pages(conn, self._replay_pages(conn, room, since, bound, ref))

    def _replay_pages(
        self, conn: Connection, room: str, since: int | None, bound: int, ref: Ref
    ) -> Iterator[bytes]:
        """The replay's frames, oldest first, each under max_frame.

        A resume carries at most ``--resume-max`` messages a room: past that
        it is the newest ones, with ``more`` for the client to page the rest
        with ``history before``. Messages are read from the store a page at a
        time, so one replay holds one page of them in memory, not all.
        """
        store = self.store
        kind = conn.kind
        budget = self.settings.max_frame - 512
        # The shared log lost entries after ``since``: this cannot be proven whole.
        gap = True if since is not None and store.gap_since(since) else None
        cache_key = None
        try:
            if since is None:
                if self.settings.replay <= 0:
                    yield encode_event(HistoryReply(room, [], False, ref), kind)
                    return
                if ref is None:
                    # A storm of joiners between two messages is sent one same
                    # backlog: read and encoded once per kind, not per joiner
                    # (it was 0.7 ms of each join of a 5 000-client storm).
                    cache_key = (room, bound, kind)
                    hit = self._replays.get(cache_key)
                    if hit is not None and hit[0] > self._time():
                        yield from hit[1]
                        return
                msgs, more = store.page(room, bound, self.settings.replay)
                batches: Iterator[list[MsgEvent]] = iter((msgs,))
            else:
                # Count what was missed a slice a turn (b"" ends this turn's
                # work): a resume of thousands costs no turn more than a slice.
                cap = self.settings.resume_max
                count = 0
                more = False
                for i, (msgs, older) in enumerate(_after_pages(store, room, since, bound, cap + 1)):
                    more = more or (i == 0 and older)
                    count += len(msgs)
                    yield b""
                if count > cap:
                    # Cut: the newest ``cap``, from the oldest of them; ``more``
                    # says older ones exist, as ever, for the client to page.
                    more = True
                    before, need = bound, cap
                    while need > 0:
                        msgs, _ = store.page(room, before, min(REPLAY_READ, need))
                        if not msgs:
                            break
                        need -= len(msgs)
                        before = msgs[0].id
                        yield b""
                    since = before - 1
                batches = (msgs for msgs, _ in _after_pages(store, room, since, bound, cap))
            chunk: list[MsgEvent] = []
            frames: list[bytes] = []  # kept for the cache
            size = 0
            for msgs in batches:
                for msg in msgs:
                    msg_size = _msg_size(msg)
                    if chunk and size + msg_size > budget:
                        frame = encode_event(HistoryReply(room, chunk, more, ref, gap), kind)
                        if cache_key is not None:
                            frames.append(frame)
                        yield frame
                        chunk, size, more = [], 0, True
                    chunk.append(msg)
                    size += msg_size
            frame = encode_event(HistoryReply(room, chunk, more, ref, gap), kind)
            if cache_key is not None:
                frames.append(frame)
                if len(self._replays) >= REPLAY_CACHE_ROOMS:
                    self._replays.clear()
                self._replays[cache_key] = (self._time() + REPLAY_CACHE_S, frames)
            yield frame
        except HistoryUnavailable as exc:
            yield self._unavailable(conn, exc, ref)

    def _unavailable(self, conn: Connection, exc: HistoryUnavailable, ref: Ref) -> bytes:
        return encode_event(
            ErrorEvent(code=ErrorCode.UNAVAILABLE.value, message=str(exc), ref=ref),
            conn.kind,
            conn.name,
        )

    def pong(self, conn: Connection, ref: Ref) -> None:
        self.send_event(conn, Pong(ts=now_ts(), ref=ref))

    def quit(self, conn: Connection, reason: str | None) -> None:
        self.disconnect(conn, reason or "quit")
        conn.close("quit")

    def shutdown(self, connections: Iterable[Connection]) -> None:
        """Tell everyone the server is going away, and close."""
        for timer, _, _ in self._away.values():
            timer.cancel()
        self._away.clear()
        for conn in list(connections):
            conn.key = None  # nobody is told of leaves: everyone is going
            conn.close("shutdown")
        self.users.clear()
        self.remote.clear()
        self.rooms.clear()
        self._room_names.clear()


def _msg_size(msg: MsgEvent) -> int:
    return len(encode_payload(msg)) + 1


REPLAY_READ = 64  # messages a replay reads from the store at a time
# A backlog made for one joiner serves the next ones for this long, while no
# message came meanwhile (its bound is the same); a time bound too, for
# retention by age (--history-days) that removes messages without new ones.
REPLAY_CACHE_S = 1.0
REPLAY_CACHE_ROOMS = 64  # backlogs kept at once (a storm is into a few rooms)


def _after_pages(
    store: HistoryStore, room: str, since: int, bound: int, cap: int
) -> Iterator[tuple[list[MsgEvent], bool]]:
    """At most ``cap`` messages after ``since`` and below ``bound``, read a few
    at a time, each slice with whether older ones exist than its first."""
    while cap > 0:
        msgs, older = store.after(room, since, min(REPLAY_READ, cap))
        msgs = [m for m in msgs if m.id < bound]
        if not msgs:
            return
        yield msgs, older
        cap -= len(msgs)
        since = msgs[-1].id
