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
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from . import __version__
from .encoding import encode_event
from .history import HistoryStore
from .protocol import (
    PROTO_VERSION,
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

if TYPE_CHECKING:
    from .config import Settings
    from .connection import Connection

log = logging.getLogger("chatserver")

_KINDS = tuple(ClientKind)


class Room:
    """A room's members, grouped by the kind of bytes they are sent."""

    __slots__ = ("by_kind", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Connection, None] = {}  # an ordered set
        self.by_kind: tuple[dict[Connection, None], ...] = tuple({} for _ in _KINDS)

    def add(self, conn: Connection) -> None:
        self.members[conn] = None
        self.by_kind[conn.kind][conn] = None

    def remove(self, conn: Connection) -> None:
        self.members.pop(conn, None)
        self.by_kind[conn.kind].pop(conn, None)


class Hub:
    def __init__(
        self, settings: Settings, store: HistoryStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.settings = settings
        self.store = store
        self._call_soon = loop.call_soon
        self._time = loop.time
        # With a durable store, output waits for the commit of the messages in
        # it (persist, then fan out): one batch commits while the next grows.
        self._durable = store.durable
        self._committing = False
        self._closes: list[tuple[Connection, bytes]] = []  # closes waiting for a commit
        self.closer = self._defer_close if self._durable else None
        # Backpressure: while a commit runs, input stops once the next batch
        # holds a quarter of --sendq (so one batch never makes a reader slow).
        self.holding = False
        self._accepted = 0
        self._hold_after = settings.sendq // 4
        self._waiters: list[Callable[[], None]] = []
        self.users: dict[str, Connection] = {}  # name key -> connection
        self.rooms: dict[str, Room] = {}
        self._dirty: list[Connection] = []  # outboxes with bytes waiting for the flush
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
        """
        if self._committing:
            return  # _committed flushes what waits meanwhile
        dirty = self._dirty
        closes = self._closes
        if not dirty and not closes:
            return
        self._dirty = []
        self._closes = []
        store = self.store
        if self._durable and store.has_pending():
            if not store.inline:
                batch = []
                for conn in dirty:
                    out = conn.out
                    if out:
                        batch.append((conn, out[0] if len(out) == 1 else b"".join(out)))
                        out.clear()
                self._committing = True
                self._accepted = 0
                store.commit(lambda error: self._committed(batch, closes, error))
                return
            store.commit(_ignore)  # on disk when it returns: now the bytes may go
        self._write_out(dirty)
        for conn, last in closes:
            conn.finish_close(last)

    def _committed(
        self,
        batch: list[tuple[Connection, bytes]],
        closes: list[tuple[Connection, bytes]],
        error: BaseException | None,
    ) -> None:
        # A failed commit was logged by the store; the messages still go out
        # (the chat carries on without durable history rather than stopping).
        self._committing = False
        for conn, data in batch:
            self._write(conn, data)
        for conn, last in closes:
            conn.finish_close(last)
        self.holding = False
        if self._dirty or self._closes:
            self._schedule_flush()
        waiters, self._waiters = self._waiters, []
        for release in waiters:
            release()

    def after_commit(self, release: Callable[[], None]) -> None:
        """Call ``release`` when the running commit is done (see ``holding``)."""
        self._waiters.append(release)

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
            log.info("%s: slow consumer, %d bytes unsent", conn, unsent)
            self.drop(conn, "slow_consumer", "slow consumer")

    def _write_out(self, dirty: list[Connection]) -> None:
        sendq = self.settings.sendq
        for conn in dirty:
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
                log.info("%s: slow consumer, %d bytes unsent", conn, unsent)
                self.drop(conn, "slow_consumer", "slow consumer")

    # ------------------------------------------------------------------
    # Membership

    def hello(self, conn: Connection, hello: Hello) -> None:
        """Register a connection under its name and join its rooms.

        Raises ProtocolError (fatal for the caller) when the name is refused.
        """
        key = name_key(hello.name)
        ghost = self.users.get(key)
        if ghost is not None and not (
            hello.session
            and ghost.session
            and secrets.compare_digest(ghost.session.encode(), hello.session.encode())
        ):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {hello.name} is taken")
        kept = list(ghost.rooms) if ghost is not None else []
        wanted = [r for r in hello.rooms if r not in kept]
        if len(kept) + len(wanted) > self.settings.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms a client"
            )
        conn.name = hello.name
        conn.key = key
        if conn.kind is ClientKind.JSON:
            conn.session = secrets.token_urlsafe(24)
        self.users[key] = conn
        if ghost is not None:
            self._take_over(ghost, conn)
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
            ),
        )
        for room in kept:
            self.send_event(conn, JoinEvent(room=room, name=conn.name, ts=now_ts()))
            self._replay(conn, room, hello.since.get(room), None)
        for room in wanted:
            self._add_member(conn, room)
            self._replay(conn, room, hello.since.get(room), None)

    def _take_over(self, ghost: Connection, conn: Connection) -> None:
        """The same user on a new connection: rooms move over, nobody sees a leave/join."""
        for room_name in ghost.rooms:
            room = self.rooms[room_name]
            room.remove(ghost)
            room.add(conn)
            conn.rooms[room_name] = None
        ghost.rooms.clear()
        ghost.key = None  # detach, so its disconnect touches nothing
        log.info("%s: replaced by %s", ghost, conn)
        ghost.close("replaced")

    def _add_member(self, conn: Connection, room_name: str) -> None:
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(room_name)
        room.add(conn)
        conn.rooms[room_name] = None
        self.broadcast(room, JoinEvent(room=room_name, name=conn.name, ts=now_ts()))

    def _remove_member(
        self, conn: Connection, room_name: str, reason: str, *, tell_leaver: bool
    ) -> None:
        room = self.rooms[room_name]
        event = LeaveEvent(room=room_name, name=conn.name, ts=now_ts(), reason=reason)
        if tell_leaver:
            self.broadcast(room, event)
        room.remove(conn)
        del conn.rooms[room_name]
        if not room.members:
            del self.rooms[room_name]
        elif not tell_leaver:
            self.broadcast(room, event)

    def disconnect(self, conn: Connection, reason: str) -> None:
        """Forget a connection: leave events to its rooms. Safe to call twice."""
        if conn.key is None:
            return
        if self.users.get(conn.key) is conn:
            del self.users[conn.key]
        conn.key = None
        for room_name in list(conn.rooms):
            self._remove_member(conn, room_name, reason, tell_leaver=False)

    def drop(self, conn: Connection, bye: str, reason: str) -> None:
        """Close a connection on the server's initiative, telling its rooms why."""
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
        room_name = self._member_room(conn, room)
        msg = MsgEvent(
            id=self.store.allocate_id(),
            ts=now_ts(),
            room=room_name,
            from_=conn.name,
            text=text,
            action=action,
        )
        self.store.append(msg)
        self._accepted += len(text) + 200  # about the bytes each member is sent
        if self._committing and self._accepted >= self._hold_after:
            self.holding = True
        self.broadcast(self.rooms[room_name], msg)
        if ref is not None:
            # The sender's copy carries its ref; the broadcast just appended the
            # plain copy last to the sender's outbox, so swap that one.
            conn.out[-1] = encode_event(
                MsgEvent(msg.id, msg.ts, msg.room, msg.from_, msg.text, msg.action, ref),
                conn.kind,
            )

    def dm(self, conn: Connection, to: str, text: str, action: bool, ref: Ref) -> None:
        target = self.users.get(name_key(to))
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"nobody called {to}")
        event = DmEvent(
            id=self.store.allocate_id(),
            ts=now_ts(),
            from_=conn.name,
            to=target.name,
            text=text,
            action=action,
        )
        if target is not conn:
            self.send_event(target, event)
        self.send_event(conn, DmEvent(event.id, event.ts, event.from_, event.to, text, action, ref))

    def join(self, conn: Connection, room: str, ref: Ref) -> None:
        if room in conn.rooms:
            # Already there: make it the current room and answer as a join would.
            del conn.rooms[room]
            conn.rooms[room] = None
            self.send_event(conn, JoinEvent(room=room, name=conn.name, ts=now_ts()))
        else:
            if len(conn.rooms) >= self.settings.max_rooms:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms a client"
                )
            self._add_member(conn, room)
        self._replay(conn, room, None, ref)

    def leave(self, conn: Connection, room: str | None, reason: str | None) -> None:
        room_name = self._member_room(conn, room)
        self._remove_member(conn, room_name, reason or "", tell_leaver=True)

    def nick(self, conn: Connection, new: str) -> None:
        key = name_key(new)
        holder = self.users.get(key)
        if holder is not None and holder is not conn:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {new} is taken")
        old = conn.name
        if new == old:
            return
        del self.users[conn.key]
        self.users[key] = conn
        conn.key = key
        conn.name = new
        event = NickEvent(old=old, new=new, ts=now_ts())
        for peer in self._peers(conn):
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
        names = sorted((m.name for m in room_obj.members), key=str.casefold)
        self.send_event(conn, WhoReply(room=room, names=names, ref=ref))

    def list_rooms(self, conn: Connection, ref: Ref) -> None:
        infos = [RoomInfo(name=r.name, members=len(r.members)) for r in self.rooms.values()]
        infos.sort(key=lambda info: info.name)
        self.send_event(conn, RoomsReply(rooms=infos, ref=ref))

    def history(
        self, conn: Connection, room: str | None, before: int | None, limit: int, ref: Ref
    ) -> None:
        if room is None:
            room = self._member_room(conn, None)
        msgs, more = self.store.page(room, before, limit)
        budget = self.settings.max_frame - 512
        # Keep the reply within one frame: drop the oldest that do not fit.
        keep = len(msgs)
        size = 0
        while keep and size + _msg_size(msgs[keep - 1]) <= budget:
            size += _msg_size(msgs[keep - 1])
            keep -= 1
        if keep:
            msgs, more = msgs[keep:], True
        self.send_event(conn, HistoryReply(room=room, messages=msgs, more=more, ref=ref))

    def _replay(self, conn: Connection, room: str, since: int | None, ref: Ref) -> None:
        """History for a joiner: the backlog, or everything after ``since``.

        Split into as many frames as needed, oldest first, each under max_frame.
        """
        if since is None:
            if self.settings.backlog <= 0:
                self.send_event(conn, HistoryReply(room=room, messages=[], more=False, ref=ref))
                return
            msgs, more = self.store.page(room, None, self.settings.backlog)
        else:
            msgs, more = self.store.after(room, since)
        budget = self.settings.max_frame - 512
        chunk: list[MsgEvent] = []
        size = 0
        for msg in msgs:
            msg_size = _msg_size(msg)
            if chunk and size + msg_size > budget:
                self.send_event(conn, HistoryReply(room=room, messages=chunk, more=more, ref=ref))
                chunk, size, more = [], 0, True
            chunk.append(msg)
            size += msg_size
        self.send_event(conn, HistoryReply(room=room, messages=chunk, more=more, ref=ref))

    def pong(self, conn: Connection, ref: Ref) -> None:
        self.send_event(conn, Pong(ts=now_ts(), ref=ref))

    def quit(self, conn: Connection, reason: str | None) -> None:
        self.disconnect(conn, reason or "quit")
        conn.close("quit")

    def shutdown(self, connections: Iterable[Connection]) -> None:
        """Tell everyone the server is going away, and close."""
        for conn in list(connections):
            conn.key = None  # nobody is told of leaves: everyone is going
            conn.close("shutdown")
        self.users.clear()
        self.rooms.clear()


def _ignore(error: BaseException | None) -> None:
    """A failed commit was logged by the store; the chat carries on without it."""


def _msg_size(msg: MsgEvent) -> int:
    return len(encode_payload(msg)) + 1
