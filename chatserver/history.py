"""The history store: message ids, recent messages per room, paging, resume.

The hub talks to the :class:`HistoryStore` interface only; :class:`MemoryHistory`
is the in-memory backend (``--db :memory:``) and
:class:`~chatserver.sqlite_history.SQLiteHistory` the durable one.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from itertools import islice
from operator import itemgetter
from typing import Protocol

from .protocol import MsgEvent


class HistoryUnavailable(Exception):
    """A read of the history failed (a damaged or vanished database file): the
    request cannot be answered now. The message is one line, fit for a client."""


class HistoryStore(Protocol):
    durable: bool  # whether output must wait for commit() (persist, then fan out)
    inline: bool  # whether commit() has called ``done`` by the time it returns

    def allocate_id(self) -> int:
        """The next message id: positive, strictly increasing, never reused."""
        ...

    def append(self, msg: MsgEvent) -> None:
        """Keep a message the server accepted (before anyone is sent it)."""
        ...

    def keep(self, msg: MsgEvent) -> None:
        """Archive a message of a cluster's shared log under the log's id
        (skipped if not newer than the last kept: a re-read)."""
        ...

    def add_gap(self, after: int, upto: int) -> None:
        """The shared log lost what lay between these ids."""
        ...

    def gap_since(self, since: int) -> bool:
        """Whether a gap lies after ``since``: a resume from it is not provably whole."""
        ...

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        """Up to ``limit`` messages older than ``before`` (newest if None), oldest
        first, and whether still older ones exist."""
        ...

    def after(
        self, room: str, after_id: int, limit: int | None = None
    ) -> tuple[list[MsgEvent], bool]:
        """The kept messages newer than ``after_id`` (the oldest ``limit`` of
        them, or all), oldest first, and whether older ones exist than the
        first returned."""
        ...

    def last_id(self) -> int:
        """The last id handed out: every message accepted so far is at or below it."""
        ...

    def take_failed(self) -> list[MsgEvent]:
        """The messages of the commits that failed since the last call (their
        ``done`` had the error); they are in no read any more."""
        ...

    def has_pending(self) -> bool:
        """Whether ids were allocated since the last commit()."""
        ...

    def commit(self, done: Callable[[BaseException | None], None]) -> None:
        """Make everything appended so far durable; then call ``done`` on the
        event loop (with the error, if the write failed)."""
        ...

    def close(self) -> None: ...


Row = tuple[int, str, str, str, str, int]
"""A message as the stores keep it: (id, room, ts, sender, text, action).

Plain tuples of strings and numbers, not MsgEvents: the garbage collector
stops tracking such a tuple once it has seen it, so the many thousands a
store holds add nothing to a full collection, which pauses the whole chat
(with MsgEvents, 20-30 ms a pass; docs/performance.md).
"""

row_id = itemgetter(0)


def to_row(msg: MsgEvent) -> Row:
    return (msg.id, msg.room, msg.ts, msg.from_, msg.text, int(msg.action))


def from_row(row: Row) -> MsgEvent:
    return MsgEvent(
        id=row[0], ts=row[2], room=row[1], from_=row[3], text=row[4], action=bool(row[5])
    )


class MemoryHistory:
    """The last ``per_room`` messages of each room, in memory."""

    durable = False
    inline = True

    def __init__(self, per_room: int = 1000) -> None:
        self.per_room = per_room
        self._rooms: dict[str, deque[Row]] = {}
        self._last_id = 0
        self._gaps: list[tuple[int, int]] = []

    def allocate_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def keep(self, msg: MsgEvent) -> None:
        if msg.id > self._last_id:
            self._last_id = msg.id
            self.append(msg)

    def add_gap(self, after: int, upto: int) -> None:
        self._gaps.append((after, upto))
        del self._gaps[:-100]

    def gap_since(self, since: int) -> bool:
        return any(upto > since for _, upto in self._gaps)

    def append(self, msg: MsgEvent) -> None:
        room = self._rooms.get(msg.room)
        if room is None:
            room = self._rooms[msg.room] = deque(maxlen=self.per_room)
        room.append(to_row(msg))

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        msgs = self._rooms.get(room)
        if not msgs:
            return [], False
        end = len(msgs) if before is None else bisect.bisect_left(msgs, before, key=row_id)
        start = max(0, end - limit)
        return [from_row(row) for row in islice(msgs, start, end)], start > 0

    def after(
        self, room: str, after_id: int, limit: int | None = None
    ) -> tuple[list[MsgEvent], bool]:
        msgs = self._rooms.get(room)
        if not msgs:
            return [], False
        start = bisect.bisect_right(msgs, after_id, key=row_id)
        end = None if limit is None else start + limit
        return [from_row(row) for row in islice(msgs, start, end)], start > 0

    def last_id(self) -> int:
        return self._last_id

    def take_failed(self) -> list[MsgEvent]:
        return []  # it never fails

    def has_pending(self) -> bool:
        return False

    def commit(self, done: Callable[[BaseException | None], None]) -> None:
        done(None)

    def close(self) -> None:
        self._rooms.clear()
