"""The two seams of shared state: the message log and the name registry.

Everything that changes what other people see (a message, a direct message,
a join or leave, a name taken, changed or given up) goes through one of them,
and the hub applies it only when it comes back (``Hub.delivered_*``). On one
process both are local and answer at once, inside the request; in a cluster
(``redis_log.py``) they are Redis, and what comes back comes back in the
shared log's one order, to every process alike. The hub's features are
written once, against these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .protocol import DmEvent, ErrorCode, MsgEvent, ProtocolError, Ref, name_key, now_ts

if TYPE_CHECKING:
    from .connection import Connection
    from .history import HistoryStore
    from .hub import Hub
    from .protocol import Hello


class ClusterError(Exception):
    """Cluster mode cannot start (Redis unreachable); one line, fit for the log."""


class MessageLog(Protocol):
    """Puts entries in one order and hands each back to the hub, once, in it.

    ``shared``: entries of other processes arrive too, later than the request
    that made them (the requester waits: its answers keep their order).
    """

    shared: bool

    def say(self, origin: Connection, room: str, text: str, action: bool, ref: Ref) -> None: ...

    def dm(
        self, origin: Connection, key: str, to: str, text: str, action: bool, ref: Ref
    ) -> None: ...

    def join(self, origin: Connection, room: str, ref: Ref) -> None: ...

    def leave(self, origin: Connection, room: str, reason: str) -> None: ...

    async def start(self) -> None: ...

    def close(self) -> None: ...


class NameRegistry(Protocol):
    """Who holds which name, one holder a name across every process."""

    def claim(self, conn: Connection, hello: Hello) -> None:
        """Take ``hello.name`` for ``conn`` (or take it over with its session
        token); raises ProtocolError, or answers ``Hub.refused_hello`` later."""
        ...

    def rename(self, conn: Connection, new: str) -> None: ...

    def release(self, conn: Connection, reason: str) -> None:
        """Give the name up: its rooms are told ``reason``."""
        ...


class LocalLog:
    """One process: ids from the history store, applied within the request."""

    shared = False

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._hub: Hub | None = None

    def bind(self, hub: Hub) -> None:
        self._hub = hub
        # Bound once: say() is the hot path.
        self._allocate = self.store.allocate_id
        self._append = self.store.append
        self._delivered = hub.delivered_msg

    def say(self, origin: Connection, room: str, text: str, action: bool, ref: Ref) -> None:
        msg = MsgEvent(self._allocate(), now_ts(), room, origin.name, text, action)
        self._append(msg)  # output of it waits for its commit (hub.flush)
        self._delivered(msg, origin, ref)

    def dm(self, origin: Connection, key: str, to: str, text: str, action: bool, ref: Ref) -> None:
        event = DmEvent(self._allocate(), now_ts(), origin.name, to, text, action)
        assert self._hub is not None
        self._hub.delivered_dm(event, key, origin, ref)

    def join(self, origin: Connection, room: str, ref: Ref) -> None:
        assert self._hub is not None and origin.key is not None
        self._hub.delivered_join(room, origin.key, origin.name, origin, ref)

    def leave(self, origin: Connection, room: str, reason: str) -> None:
        assert self._hub is not None and origin.key is not None
        self._hub.delivered_leave(room, origin.key, origin.name, reason)

    async def start(self) -> None:
        return None

    def close(self) -> None:
        return None


class LocalNames:
    """One process: the hub's own table of its connections is the registry."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def claim(self, conn: Connection, hello: Hello) -> None:
        hub = self._hub
        key = name_key(hello.name)
        ghost = hub.users.get(key)
        if ghost is not None and not hub.same_session(ghost.session, hello.session):
            raise ProtocolError(ErrorCode.NAME_TAKEN, hub.taken_message(hello.name, ghost))
        kept = list(ghost.rooms) if ghost is not None else []
        hub.check_rooms(kept, hello)
        hub.claimed(conn, hello, key, kept, ghost)

    def rename(self, conn: Connection, new: str) -> None:
        hub = self._hub
        key = name_key(new)
        holder = hub.users.get(key)
        if holder is not None and holder is not conn:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {new} is taken")
        assert conn.key is not None
        hub.renamed(conn.key, key, conn.name, new)

    def release(self, conn: Connection, reason: str) -> None:
        assert conn.key is not None
        self._hub.released(conn.key, conn.name, list(conn.rooms), reason)
