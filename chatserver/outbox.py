"""A connection's output past the hot path: replies made page by page as it reads.

The hub appends ready bytes to ``conn.out`` (the hot path: one list append
per delivery) and writes them once per loop turn. A reply that can be large
(the backlog or resume replay of a room, a ``history`` page, the room list)
is not made when it is asked for: it waits in ``conn.queue`` as an iterator
of frames, and each frame is made only while the connection's transport is
below its high-water mark, at most :data:`PAGE_BUDGET` bytes a turn. So a
client that asks for a lot and does not read costs the server one page, not
everything it asked for.

Whatever the connection is sent after such a reply waits behind it in the
queue (its order is the order it was produced in), and those waiting bytes
count toward its ``--sendq`` with what its transport holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection

PAGE_BUDGET = 64 * 1024  # bytes of pages one connection is made per loop turn

Pages = Iterator[bytes]
"""Frames made one at a time, when the connection is ready for them; an
empty one means "more work, in a later turn" (a long reading cut up)."""


def enqueue(conn: Connection, pages: Pages) -> None:
    """Put ``pages`` after everything ``conn`` has been sent so far."""
    if conn.queue is None:
        conn.queue = deque()
    hold(conn)
    conn.queue.append(pages)


def hold(conn: Connection) -> None:
    """Move the ready bytes behind what already waits in the queue."""
    out = conn.out
    if out and conn.queue is not None:
        conn.queue.append(out)
        conn.held += sum(map(len, out))
        conn.out = []


def drain(conn: Connection, segments: int | None = None, budget: int = PAGE_BUDGET) -> bool:
    """Write what may go now, in order: waiting bytes, and pages while the
    transport takes them, up to ``segments`` queue entries (all if None).

    Returns whether pages are left that could be made at once (the turn's
    budget ran out): the caller drains again next turn.
    """
    queue = conn.queue
    if queue is None:
        return False
    transport = conn.transport
    if transport.is_closing():
        discard(conn)
        return False
    n = len(queue) if segments is None else segments
    while n and queue:
        segment = queue[0]
        if type(segment) is list:
            data = b"".join(segment)
            conn.held -= len(data)
            transport.write(data)
        else:
            while True:
                if conn.paused or transport.is_closing():
                    return False  # resume_writing (or the close) wakes it
                if budget <= 0:
                    return True
                page = next(segment, None)  # type: ignore[call-overload]
                if page is None:
                    break
                if not page:
                    return True  # it did a turn's work without a frame yet
                budget -= len(page)
                transport.write(page)
        queue.popleft()
        n -= 1
    if not queue:
        conn.queue = None
    return False


def discard(conn: Connection) -> None:
    conn.queue = None
    conn.held = 0


def last_bytes(conn: Connection, budget: int) -> bytes:
    """Everything waiting for a closing connection, pages made up to ``budget``."""
    parts: list[bytes] = []
    queue = conn.queue
    if queue is not None:
        for segment in queue:
            if type(segment) is list:
                parts += segment
                continue
            for page in segment:  # type: ignore[union-attr]
                if budget <= 0:
                    break
                budget -= len(page)
                parts.append(page)
        discard(conn)
    parts += conn.out
    conn.out.clear()
    return b"".join(parts)
