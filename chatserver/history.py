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
from typing import Protocol

from .protocol import MsgEvent


class HistoryStore(Protocol):
    durable: bool  # whether output must wait for commit() (persist, then fan out)
    inline: bool  # whether commit() has called ``done`` by the time it returns

    def allocate_id(self) -> int:
        """The next message id: positive, strictly increasing, never reused."""
        ...

    def append(self, msg: MsgEvent) -> None:
        """Keep a message the server accepted (before anyone is sent it)."""
        ...

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        """Up to ``limit`` messages older than ``before`` (newest if None), oldest
        first, and whether still older ones exist."""
        ...

    def after(self, room: str, after_id: int) -> tuple[list[MsgEvent], bool]:
        """Every kept message newer than ``after_id``, oldest first, and whether
        older ones exist than the first returned."""
        ...

    def has_pending(self) -> bool:
        """Whether ids were allocated since the last commit()."""
        ...

    def commit(self, done: Callable[[BaseException | None], None]) -> None:
        """Make everything appended so far durable; then call ``done`` on the
        event loop (with the error, if the write failed)."""
        ...

    def close(self) -> None: ...


class MemoryHistory:
    """The last ``per_room`` messages of each room, in memory."""

    durable = False
    inline = True

    def __init__(self, per_room: int = 1000) -> None:
        self.per_room = per_room
        self._rooms: dict[str, deque[MsgEvent]] = {}
        self._last_id = 0

    def allocate_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def append(self, msg: MsgEvent) -> None:
        room = self._rooms.get(msg.room)
        if room is None:
            room = self._rooms[msg.room] = deque(maxlen=self.per_room)
        room.append(msg)

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        msgs = self._rooms.get(room)
        if not msgs:
            return [], False
        end = len(msgs) if before is None else bisect.bisect_left(msgs, before, key=_id)
        start = max(0, end - limit)
        return list(islice(msgs, start, end)), start > 0

    def after(self, room: str, after_id: int) -> tuple[list[MsgEvent], bool]:
        msgs = self._rooms.get(room)
        if not msgs:
            return [], False
        start = bisect.bisect_right(msgs, after_id, key=_id)
        return list(islice(msgs, start, None)), start > 0

    def has_pending(self) -> bool:
        return False

    def commit(self, done: Callable[[BaseException | None], None]) -> None:
        done(None)

    def close(self) -> None:
        self._rooms.clear()


def _id(msg: MsgEvent) -> int:
    return msg.id
