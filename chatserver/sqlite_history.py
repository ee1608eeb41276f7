"""Durable history in SQLite: one group commit per event-loop turn.

The loop appends accepted messages to this store as it goes; once per loop
turn, before anything is written to a client, the hub asks for everything
appended since the last commit to be committed (:meth:`SQLiteHistory.commit`),
so a message that anyone was sent is on disk. Without ``--fsync`` a commit
needs no disk wait and the loop runs it itself; with ``--fsync`` one writer
thread commits while the loop goes on, and the hub holds the turn's bytes
back until it is done, so while one batch commits the next one grows.

Retention runs inside those same commits, a bounded number of rows each
time: no other connection ever writes, so a commit never waits for a lock.

Reads (join backlog, ``history`` paging, ``hello.since``) come from an
in-memory tail of each room's newest messages, and from SQLite for anything
older (range queries on the room index, on the loop's thread; WAL lets them
run beside the writer).

A commit stores one row per room, a *chunk*: that room's messages of the
commit, as a JSON array. Under load a commit carries hundreds of messages
over a few rooms, and SQLite's cost is per row. The room index,
``room_ids``, finds a room's chunks; it is filled in batches, not chunk by
chunk: until a message's chunk is in it, its room's tail keeps the message.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import logging
import os
import queue
import sqlite3
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from .history import HistoryUnavailable, Row, from_row, row_id, to_row
from .protocol import MsgEvent
from .protocol.jsoncodec import dumps, loads
from .ratelog import Throttle

log = logging.getLogger("chatserver")

SCHEMA_VERSION = 3
CACHE_PER_ROOM = 256  # newest messages of each room kept in memory for reads
PRUNE_EVERY = 5.0  # seconds between retention-by-age passes
PRUNE_STEP = 256  # messages (or whole chunks, by age) a commit deletes at most: it never stalls
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints
INDEX_EVERY = 1.0  # seconds a chunk may wait for the room index (its tail keeps it meanwhile)
INDEX_BATCH = 4096  # message ids one commit indexes at most, and how many waiting trigger it
ID_LIMIT = 2**53  # ids stay below it (PROTOCOL 9.5: exact as a JSON number anywhere)
ID_RESERVE = 2**40  # ids a start must leave below ID_LIMIT (most of a year at 38 000 msg/s)


class HistoryError(Exception):
    """The database cannot be used; the message is one line for the operator."""


def id_floor() -> int:
    """The lowest id a store started now hands out: milliseconds since the
    epoch x 1 000 (see ``SQLiteHistory._start_ids``).

    Below 2^53 until the year 2255; a clock past 2112 (a wrong one, or a
    server that old) is held there, which still leaves half the ids.
    """
    return min(time.time_ns() // 1_000_000 * 1000, 2**52)


def default_db_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chatserver" / "history.db"


# MIGRATIONS[n] is the SQL that brings a database at user_version n to n + 1.
MIGRATIONS: list[str] = [
    """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room TEXT NOT NULL,
            ts TEXT NOT NULL,
            sender TEXT NOT NULL,
            text TEXT NOT NULL,
            action INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX messages_room_id ON messages (room, id);
        -- The highest id ever handed out (direct messages take ids too but
        -- are not stored): ids stay increasing across restarts.
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('last_id', 0);
    """,
    # 2: the room index moves to a table filled in batches. Indexing every
    # row in its own commit dirtied one index page per room per commit, three
    # quarters of a commit's cost with a hundred busy rooms.
    """
        CREATE TABLE room_ids (
            room TEXT NOT NULL,
            id INTEGER NOT NULL,
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID;
        INSERT INTO room_ids SELECT room, id FROM messages ORDER BY room, id;
        DROP INDEX messages_room_id;
        -- Every message up to this id is in room_ids; newer ones wait for a batch.
        INSERT INTO meta VALUES ('indexed_id', (SELECT coalesce(max(id), 0) FROM messages));
    """,
    # 3: messages are stored in chunks, one row per room per commit (SQLite's
    # cost is per row, and a busy commit holds hundreds of messages over a
    # few rooms). A chunk's id is its first message's id, so room_ids now
    # lists chunks; each old message becomes a chunk of one.
    """
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,  -- the id of its first (oldest) message
            room TEXT NOT NULL,
            n INTEGER NOT NULL,  -- how many messages it holds
            ts TEXT NOT NULL,  -- its first message's ts (retention by age)
            msgs TEXT NOT NULL  -- JSON: [[id, room, ts, sender, text, action], ...], oldest first
        );
        INSERT INTO chunks SELECT id, room, 1, ts,
            json_array(json_array(id, room, ts, sender, text, action)) FROM messages ORDER BY id;
        -- From now on every commit records the highest id handed out.
        UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM messages))
            WHERE key = 'last_id';
        DROP TABLE messages;
    """,
]


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"the database is from a newer chatserver (schema {version} > {SCHEMA_VERSION})"
        )
    for step in range(version, SCHEMA_VERSION):
        # One transaction per step: a crash leaves the old version or the new.
        db.executescript(f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version = {step + 1}; COMMIT;")


# The files this process's stores hold, as (st_dev, st_ino): see _lock.
_HELD: set[tuple[int, int]] = set()
_HELD_LOCK = threading.Lock()


def _lock(path: Path) -> tuple[int, tuple[int, int]]:
    """Open the database file (made if new) and take an exclusive ``flock`` on
    it, held for the store's life: a second server on the same file is
    refused, whether it names it by the same path, another spelling, a
    symlink or a hard link, since the lock is on the file itself. The kernel
    releases it when the process dies, even by ``kill -9``. Returns the
    descriptor and the file's (st_dev, st_ino).

    SQLite locks the same file with POSIX (fcntl) locks, and those belong to
    the process, not to a descriptor: closing *any* descriptor of the file
    drops *all* of them (SQLite works around that only for its own
    descriptors). Without them, another process's connection to the file
    takes itself for the last one when it closes, and deletes the WAL from
    under this one. Hence this descriptor is opened before this store's
    connections and closed after them (``_unlock``), and a second store on a
    file that a store of this same process holds is refused by ``_HELD``,
    before it opens the file at all. A store refused by another process's
    lock closes its descriptor while this process has no SQLite lock on that
    file. ``flock`` itself is a separate kind of lock on Linux: it neither
    meets nor merges with fcntl locks (except on NFS, which emulates it with
    them, and where SQLite's WAL does not work anyway).
    """
    if path.parent.exists() and not path.parent.is_dir():
        raise HistoryError(f"cannot use {path}: {path.parent} is not a folder")
    with _HELD_LOCK:
        try:
            known = os.stat(path)
        except OSError:
            known = None
        if known is not None and (known.st_dev, known.st_ino) in _HELD:
            raise HistoryError(f"{path} is in use by another chatserver")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Read-write, which also proves the file can be written (not
            # os.access: it answers for the real uid, and not for every
            # reason an open may fail), root's file chattr +i included.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            why = exc.strerror
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                why = f"it cannot be written ({why})"
            raise HistoryError(f"cannot use {path}: {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise HistoryError(f"{path} is in use by another chatserver") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a device, say: not for SQLite
            os.close(fd)
            raise HistoryError(f"cannot use {path}: not a regular file")
        file_id = (st.st_dev, st.st_ino)
        _HELD.add(file_id)
    return fd, file_id


def _check_writable(path: Path) -> None:
    """Refuse to start unless SQLite can write the -wal and -shm files beside
    the database, when they exist (the database itself: ``_lock``).

    With a read-only -shm the server used to run on and die of SIGBUS at the
    first write, with nothing logged; with an unwritable WAL every commit
    failed. Opened read-write and closed at once: no store of this process
    uses the file yet (``_lock``), so no SQLite lock of ours is on them.
    """
    real = os.path.realpath(path)  # SQLite follows a symlink to name them
    for name in (real + "-wal", real + "-shm"):
        try:
            fd = os.open(name, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # SQLite makes it
        except OSError as exc:
            raise HistoryError(
                f"cannot use {path}: {name} cannot be written ({exc.strerror})"
            ) from None
        os.close(fd)


def _check_intact(path: Path) -> None:
    """Refuse a damaged database at start, with one line, rather than fail
    every read of a room whose pages are bad.

    ``PRAGMA quick_check`` reads every page of every table and index (not
    whether each index matches its table, which integrity_check adds); it
    grows with the file. A million messages (2-core VM, 2026-12-02): in
    chunks of 50, 164 MB, 0.08-0.18 s from the page cache; a chunk a message
    (a quiet server), 200 MB, 0.28-0.55 s; from a cold cache, 1.2-3.8 s,
    the time to read the file. The rest of a start takes 0.27 s and 1.6 s.
    """
    db = sqlite3.connect(path)
    try:
        try:
            found = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorname != "SQLITE_CORRUPT":
                raise
            found = str(exc)
    finally:
        db.close()
    if found != "ok":
        found = " ".join(found.replace("*** in database main ***", "").split())
        raise HistoryError(
            f"cannot use {path}: the database is damaged ({found}); restore it from a"
            " backup, or move it away to start with an empty history"
        )


# What a read raises when the file fails it: SQLite's errors, and a chunk
# whose JSON no longer parses (a damaged page SQLite cannot tell from data).
_UNREADABLE = (sqlite3.Error, ValueError)

_INSERT = "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)"
_INSERT_JSON = (
    "INSERT INTO chunks SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3,"
    " value ->> 4 FROM json_each(?)"
)
_Batch = tuple[list["Chunk"], int, Callable[[BaseException | None], None]]


class SQLiteHistory:
    """The :class:`~chatserver.history.HistoryStore` on a SQLite file."""

    durable = True

    def __init__(
        self,
        path: str | Path,
        per_room: int = 10_000,
        max_days: float | None = None,
        fsync: bool = False,
        clock_floor: bool = True,
    ) -> None:
        self.path = Path(path)
        self.per_room = per_room
        self.max_days = max_days
        # One kind of failure, one log line a minute (reads may fail at
        # every join; the file check runs every second).
        self._read_failures = Throttle()
        self._checkpoint_failures = Throttle()
        self._file_lost = Throttle()
        self._file_state = ""  # how the file was last found lost ("" while it is in place)
        self._lock_fd, self._file_id = _lock(self.path)
        try:
            _check_writable(self.path)
            _check_intact(self.path)
            self._read = self._open(self.path, fsync)
        except (sqlite3.Error, HistoryError) as exc:
            self._unlock()
            raise self._refusal(exc) from None
        try:
            # It writes too (the loop's own commits): checkpoints happen on
            # their thread, never inside a commit.
            self._read.execute("PRAGMA wal_autocheckpoint=0")
            row = self._read.execute(
                "SELECT max((SELECT value FROM meta WHERE key = 'last_id'),"
                " coalesce((SELECT max(id) FROM chunks), 0),"
                " (SELECT value FROM meta WHERE key = 'indexed_id')),"
                " (SELECT value FROM meta WHERE key = 'indexed_id')"
            ).fetchone()
            # The room index: every row up to _indexed is in room_ids, on disk;
            # _indexing runs ahead of it inside a commit until the commit is done.
            self._indexed = self._indexing = int(row[1])
            # An archive of a cluster's log keeps the log's ids: no floor of its own.
            self._last_id = self._start_ids(int(row[0])) if clock_floor else int(row[0])
            gaps = self._read.execute("SELECT value FROM meta WHERE key = 'gaps'").fetchone()
            self._gaps: list[list[int]] = loads(gaps[0]) if gaps else []
        except (sqlite3.Error, HistoryError) as exc:
            self._read.close()
            self._unlock()
            raise self._refusal(exc) from None
        self._committed_id = self._last_id  # every id up to this is on disk
        self._next_index = time.monotonic() + INDEX_EVERY
        self._deletes = 0  # retention deletes by the commits so far
        self._trimmed_at = (0, 0)  # (_indexed, _deletes) when the tails were last trimmed
        # Each room's newest rows, as tuples (see history.Row: no GC cost).
        self._tails: dict[str, deque[Row]] = {}
        self._rows: list[Row] = []  # appended since the last hand-over
        self._failed: list[MsgEvent] = []  # of commits that failed, for take_failed()
        self._handed_id = self._last_id  # the last id of the last hand-over
        self._loop_call: Callable[..., object] | None = None
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        # Retention: exact at start-up (a lowered --history-max applies at
        # once), then from the committing thread in small steps.
        try:
            self._prune(self._read)  # indexes what a crash left unindexed, first
            self._counts = _room_counts(self._read)
            # Opened here, not in its thread: a file deleted meanwhile would
            # be made again, empty, by a later connect.
            checkpoint_db = self._open(self.path, fsync)
        except sqlite3.Error as exc:
            self._read.close()
            self._unlock()
            raise HistoryError(f"cannot use {self.path}: {exc}") from None
        # A room is trimmed once it is this far over (deletes come in runs).
        self._slack = max(1, min(per_room // 20, 500))
        self._next_age_pass = time.monotonic() + PRUNE_EVERY
        # Age retention: the chunks from _age_from to below _age_before are
        # still to be looked at, for messages older than _age_cutoff.
        self._age_before: int | None = None
        self._age_from = 0
        self._age_cutoff = ""
        # Without --fsync a commit costs no disk wait: the loop commits itself.
        # With it, a commit waits for the disk: one writer thread does that.
        self.inline = not fsync
        self._writer = threading.Thread(
            target=self._write_loop, args=(fsync,), name="history-writer", daemon=True
        )
        # The writer needs the GIL a few times a commit; a busy event loop
        # hands it over only every switch interval (5 ms by default).
        sys.setswitchinterval(0.0005)
        if not self.inline:
            self._writer.start()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_db,),
            name="history-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()

    # ------------------------------------------------------------------
    # Opening

    def _start_ids(self, last: int) -> int:
        """Where this run's ids start: above the last id the file has seen, and
        above the clock's floor (``id_floor``).

        Ids are never reused, even when the database that gave them out is
        gone: deleted (the next start makes a new, empty one), or replaced by
        an older copy (a backup restored). The floor rises 1 000 a
        millisecond, and a database cannot have handed out an id above it
        unless it averaged more than 1 000 ids a millisecond since its last
        start (a million a second; the server tops out at a few tens of
        thousands): every id of a lost database is below the floor of any
        later start. Only a clock set back between the two defeats it. The
        rule holds at every start, not only for a new file: a restored backup
        looks like any other database. Ids need not be consecutive (PROTOCOL
        9.5), so the jump at a start costs nothing.
        """
        start = max(last, id_floor())
        if start >= ID_LIMIT - ID_RESERVE:
            raise HistoryError(f"cannot use {self.path}: its ids have run out (the last is {last})")
        if start > last:
            with self._read:
                # Nothing lies between the last id and the floor: the index
                # jumps the gap now (its batches would crawl up it otherwise),
                # and indexes what a crash left unindexed on the way.
                self._index(self._read, start)
                self._read.execute("UPDATE meta SET value = ? WHERE key = 'last_id'", (start,))
            self._indexed = self._indexing
        return start

    def _refusal(self, exc: Exception) -> HistoryError:
        """Why the store cannot start, in one line."""
        if isinstance(exc, HistoryError):
            return exc
        return HistoryError(f"cannot use {self.path}: {exc}")

    def _unlock(self) -> None:
        """Release the file (after every connection to it is closed: see _lock)."""
        os.close(self._lock_fd)
        with _HELD_LOCK:
            _HELD.discard(self._file_id)

    @staticmethod
    def _open(path: Path, fsync: bool) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False)
        try:
            # Reading the schema fails here, with one clear error, for a file
            # that is not a database.
            db.execute("PRAGMA journal_mode=WAL").fetchone()
            db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            db.execute("PRAGMA busy_timeout=2000")
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    # ------------------------------------------------------------------
    # The store interface, on the event loop's thread

    def allocate_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def append(self, msg: MsgEvent) -> None:
        row = to_row(msg)
        self._rows.append(row)
        tail = self._tails.get(msg.room)
        if tail is None:
            tail = self._tails[msg.room] = deque()
        tail.append(row)

    def keep(self, msg: MsgEvent) -> None:
        """Archive a message of a shared log, under the log's id (once: one
        read again after a restart is skipped)."""
        if msg.id > self._last_id:
            self._last_id = msg.id
            self.append(msg)

    def add_gap(self, after: int, upto: int) -> None:
        """The log lost what lay between these ids: resumes across it say so."""
        self._gaps.append([after, upto])
        del self._gaps[:-100]
        with self._read:
            self._read.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('gaps', ?)",
                (dumps(self._gaps).decode(),),
            )

    def gap_since(self, since: int) -> bool:
        return any(upto > since for _, upto in self._gaps)

    def has_pending(self) -> bool:
        """Whether ids were handed out since the last :meth:`commit`."""
        return self._last_id != self._handed_id

    def commit(self, done: Callable[[BaseException | None], None]) -> None:
        """Hand what was appended since the last call to the writer; ``done``
        runs on the loop's thread once it is on disk (with the error if not)."""
        if self._loop_call is None:
            import asyncio

            self._loop_call = asyncio.get_running_loop().call_soon_threadsafe
        chunks = _chunks(self._rows)
        self._rows = []
        first = self._handed_id
        self._handed_id = last = self._last_id

        def committed(error: BaseException | None) -> None:
            if error is not None:
                # Rolled back: its messages are sent to nobody, so no read may
                # find them either (the hub answers their senders `unavailable`).
                self._forget(first, last, {chunk[1] for chunk in chunks})
                self._failed += [from_row(row) for chunk in chunks for row in loads(chunk[4])]
            else:
                self._committed_id = max(self._committed_id, last)
            self._trim()
            done(error)

        if self.inline:
            committed(self._commit_here(chunks, last))
        else:
            self._queue.put((chunks, last, committed))

    def _commit_here(self, chunks: list[Chunk], last: int) -> BaseException | None:
        """Commit on the loop's own thread: WAL without fsync only appends to
        the OS's cache, a fraction of a millisecond, cheaper than handing the
        batch to a thread and waiting for the GIL to come back."""
        db = self._read
        try:
            with db:
                self._write_chunks(db, chunks, last)
        except sqlite3.Error as exc:  # logged by the hub, at a bounded rate
            self._recount(db)
            return exc
        self._indexed = self._indexing
        return None

    def _forget(self, after: int, upto: int, rooms: set[str]) -> None:
        """Drop the rows with ids in (after, upto] from the tails of ``rooms``."""
        for room in rooms:
            tail = self._tails.get(room)
            if tail is None:
                continue
            kept = deque(row for row in tail if not after < row[0] <= upto)
            if kept:
                self._tails[room] = kept
            else:
                del self._tails[room]

    def _write_chunks(self, db: sqlite3.Connection, chunks: list[Chunk], last: int) -> None:
        """One commit's statements, on the committing thread, inside its transaction."""
        if chunks and self.inline:
            db.executemany(_INSERT, chunks)  # the loop's own thread: 25 % cheaper
        elif chunks:
            # The writer thread: one statement for the whole batch, as
            # executemany would take the GIL back once a row, and a busy event
            # loop hands it over only every switch interval.
            db.execute(_INSERT_JSON, (dumps(chunks).decode(),))
        # Direct messages take ids too but are not stored, and a chunk's id is
        # its first message's: the highest id handed out is kept apart, so
        # that ids keep increasing across restarts.
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_id'", (last,))
        waiting = last - self._indexing
        if waiting >= INDEX_BATCH or (waiting > 0 and time.monotonic() >= self._next_index):
            self._index(db, min(last, self._indexing + INDEX_BATCH))
        self._retain(db, chunks, last)

    def _index(self, db: sqlite3.Connection, upto: int) -> None:
        """Add the chunks after the index's watermark, up to id ``upto``, to room_ids.

        In batches: each room's index page is then written once a batch
        instead of once a commit. Until then a message is found through its
        room's tail in memory (``_trim`` keeps every message with an id over
        the watermark, as its chunk may not be indexed).
        """
        db.execute(
            "INSERT INTO room_ids SELECT room, id FROM chunks WHERE id > ? AND id <= ?",
            (self._indexing, upto),
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'indexed_id'", (upto,))
        self._indexing = upto
        self._next_index = time.monotonic() + INDEX_EVERY

    def _recount(self, db: sqlite3.Connection) -> None:
        """After a failed commit (rolled back): the messages per room as they are."""
        self._indexing = self._indexed
        with contextlib.suppress(sqlite3.Error):
            self._counts = _room_counts(db)

    def _retain(self, db: sqlite3.Connection, chunks: list[Chunk], last: int) -> None:
        """Retention, a bounded step per commit, so that no commit grows long."""
        counts = self._counts
        for chunk in chunks:
            counts[chunk[1]] = counts.get(chunk[1], 0) + chunk[2]
        budget = PRUNE_STEP
        limit = self.per_room + self._slack
        for room in {chunk[1] for chunk in chunks}:
            if counts[room] > limit:
                n = min(counts[room] - self.per_room, budget)
                gone = self._drop_oldest(db, room, n)
                if gone < n and self._indexing < last:
                    # A small --history-max: what is to go is not indexed yet.
                    self._index(db, last)
                    gone += self._drop_oldest(db, room, n - gone)
                counts[room] -= gone
                budget -= gone
                if not budget:
                    return
        if self.max_days is None:
            return
        if self._age_before is None and time.monotonic() >= self._next_age_pass:
            self._next_age_pass = time.monotonic() + PRUNE_EVERY
            self._age_cutoff = _iso(datetime.now(UTC) - timedelta(days=self.max_days))
            # Ids grow with time: chunks before the first whose first message
            # is young enough are the ones that hold too old messages.
            first = db.execute(
                "SELECT id FROM chunks WHERE ts >= ? ORDER BY id LIMIT 1", (self._age_cutoff,)
            ).fetchone()
            if first is None:  # every chunk is too old
                first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM chunks").fetchone()
            self._age_from, self._age_before = 0, first[0]
            self._call_loop(self._forget_before, self._age_cutoff)
        if self._age_before is not None:
            old = db.execute(
                "SELECT id, room, msgs FROM chunks WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                (self._age_from, self._age_before, budget),
            ).fetchall()
            cutoff = self._age_cutoff
            for key, room, msgs in old:
                rows = loads(msgs)
                counts[room] -= self._replace(
                    db, key, room, rows, [row for row in rows if row[2] >= cutoff]
                )
            if old:
                self._age_from = old[-1][0] + 1
            if len(old) < budget:
                self._age_before = None

    def _drop_oldest(self, db: sqlite3.Connection, room: str, n: int) -> int:
        """Delete a room's oldest ``n`` indexed messages (fewer if fewer are
        indexed); return how many went."""
        whole = None  # the last chunk that goes whole
        gone = 0
        cursor = db.execute(
            "SELECT r.id, c.n FROM room_ids AS r CROSS JOIN chunks AS c ON c.id = r.id"
            " WHERE r.room = ? ORDER BY r.id",
            (room,),
        )
        part = None
        for key, size in cursor:
            if gone + size > n:
                part = key  # only its first messages go
                break
            whole = key
            gone += size
            if gone == n:
                break
        cursor.close()
        if whole is not None:
            _delete_upto(db, room, whole)
            self._deletes += 1  # the tails may hold what went: trim them
        if part is not None:
            msgs = db.execute("SELECT msgs FROM chunks WHERE id = ?", (part,)).fetchone()[0]
            rows = loads(msgs)
            gone += self._replace(db, part, room, rows, rows[n - gone :])
        return gone

    def _replace(
        self, db: sqlite3.Connection, key: int, room: str, rows: list[Row], kept: list[Row]
    ) -> int:
        """Put ``kept`` in the place of chunk ``key`` (``rows``): its first
        message changes, so does its id. Return how many messages went."""
        if len(kept) == len(rows):
            return 0
        db.execute("DELETE FROM chunks WHERE id = ?", (key,))
        db.execute("DELETE FROM room_ids WHERE room = ? AND id = ?", (room, key))
        if kept:
            db.execute(_INSERT, _chunk(kept))
            if kept[0][0] <= self._indexing:  # otherwise the next index batch takes it
                db.execute("INSERT INTO room_ids VALUES (?, ?)", (room, kept[0][0]))
        self._deletes += 1
        return len(rows) - len(kept)

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        try:
            return self._page(room, before, limit)
        except _UNREADABLE as exc:
            raise self._unreadable(room, exc) from None

    def after(
        self, room: str, after_id: int, limit: int | None = None
    ) -> tuple[list[MsgEvent], bool]:
        try:
            return self._after(room, after_id, limit)
        except _UNREADABLE as exc:
            raise self._unreadable(room, exc) from None

    def _unreadable(self, room: str, exc: Exception) -> HistoryUnavailable:
        """A read failed (a damaged page, a vanished disk): the request gets a
        clear answer, the log a line a minute, the connection carries on."""
        self._read_failures.log(
            logging.ERROR, "history: cannot read room %s from %s: %s", room, self.path, exc
        )
        return HistoryUnavailable(f"the history of {room} cannot be read now")

    def _page(self, room: str, before: int | None, limit: int) -> tuple[list[MsgEvent], bool]:
        tail = self._tails.get(room) or deque()
        end = len(tail) if before is None else bisect.bisect_left(tail, before, key=row_id)
        start = max(0, end - limit)
        newer = [from_row(row) for row in islice(tail, start, end)]
        if start > 0:
            return newer, True
        # The tail holds every message from its first on: the rest is older,
        # and on disk.
        bound = newer[0].id if newer else (before if before is not None else self._last_id + 1)
        need = limit - len(newer)
        older: list[list[Row]] = []  # chunks' messages below bound, newest chunk first
        found = 0
        # Closed even when a read fails: an open statement keeps its read
        # transaction, and that holds every checkpoint back.
        with contextlib.closing(
            self._read.execute(
                _SELECT_INDEXED + " WHERE r.room = ? AND r.id < ? ORDER BY r.id DESC",
                (room, bound),
            )
        ) as cursor:
            for (msgs,) in cursor:
                rows = [row for row in loads(msgs) if row[0] < bound]
                older.append(rows)
                found += len(rows)
                if found > need:
                    break
        rows = [row for chunk in reversed(older) for row in chunk]
        return [from_row(row) for row in rows[max(0, found - need) :]] + newer, found > need

    def _after(
        self, room: str, after_id: int, limit: int | None = None
    ) -> tuple[list[MsgEvent], bool]:
        tail = self._tails.get(room) or deque()
        start = bisect.bisect_right(tail, after_id, key=row_id)
        end = None if limit is None else start + limit
        if start > 0:
            return [from_row(row) for row in islice(tail, start, end)], True
        bound = tail[0][0] if tail else self._last_id + 1
        # From the chunk that holds after_id (the last to start at or before it),
        # a chunk at a time until there are enough: chunks hold many messages,
        # and decoding more than a slice needs made each slice of a resume
        # cost whole megabytes (ten silent resumes stalled the chat 0.6 s).
        rows: list[Row] = []
        with contextlib.closing(
            self._read.execute(
                _SELECT_INDEXED + " WHERE r.room = ? AND r.id >= coalesce((SELECT max(id)"
                " FROM room_ids WHERE room = ? AND id <= ?), 0) AND r.id < ? ORDER BY r.id",
                (room, room, after_id, bound),
            )
        ) as cursor:
            for (chunk,) in cursor:
                rows.extend(row for row in loads(chunk) if after_id < row[0] < bound)
                if limit is not None and len(rows) >= limit:
                    break
        if limit is None or len(rows) < limit:
            rows += islice(tail, 0, None if limit is None else limit - len(rows))
        msgs = [from_row(row) for row in rows[:limit]]
        return msgs, self._older_exists(room, msgs[0].id if msgs else after_id + 1)

    def last_id(self) -> int:
        return self._last_id

    def take_failed(self) -> list[MsgEvent]:
        failed, self._failed = self._failed, []
        return failed

    def close(self) -> None:
        """Commit what is queued, stop the writer, release the file."""
        if self.inline:
            if self._rows or self.has_pending():
                self._commit_here(_chunks(self._rows), self._last_id)
                self._rows = []
        else:
            if self._rows:
                self._queue.put((_chunks(self._rows), self._last_id, lambda error: None))
                self._rows = []
            self._queue.put(None)
            self._writer.join(timeout=10)
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with contextlib.suppress(sqlite3.Error):
            self._read.close()
        self._unlock()

    # ------------------------------------------------------------------

    def _older_exists(self, room: str, first_id: int) -> bool:
        tail = self._tails.get(room)
        if tail and tail[0][0] < first_id:
            return True
        row = self._read.execute(
            "SELECT 1 FROM room_ids WHERE room = ? AND id < ? LIMIT 1", (room, first_id)
        ).fetchone()
        return row is not None

    def _trim(self) -> None:
        """Keep each tail short, but never drop a row that is not in the room
        index yet (on disk or not): reads find those in the tails only."""
        indexed = self._indexed
        mark = (indexed, self._deletes)
        if mark == self._trimmed_at:
            return  # nothing indexed or deleted since the last time: nothing may go
        self._trimmed_at = mark
        keep = min(CACHE_PER_ROOM, self.per_room)
        for room, tail in list(self._tails.items()):
            while len(tail) > keep and tail[0][0] <= indexed:
                tail.popleft()
            if not tail:
                del self._tails[room]

    def _forget_before(self, cutoff: str) -> None:
        """Retention by age reached the tails too (on the loop's thread)."""
        for room, tail in list(self._tails.items()):
            while tail and tail[0][2] < cutoff and tail[0][0] <= self._committed_id:
                tail.popleft()
            if not tail:
                del self._tails[room]

    # ------------------------------------------------------------------
    # The writer thread

    def _write_loop(self, fsync: bool) -> None:
        db = self._open(self.path, fsync)
        # Checkpoints (which sync the database file) run on their own thread:
        # inside a commit they would hold every waiting message up.
        db.execute("PRAGMA wal_autocheckpoint=0")
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                # Take every batch already waiting: one transaction for all.
                batches = [batch]
                stop = False
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batches.append(more)
                error: BaseException | None = None
                try:
                    with db:
                        chunks = [chunk for batch in batches for chunk in batch[0]]
                        self._write_chunks(db, chunks, batches[-1][1])
                    self._indexed = self._indexing  # read by the loop's _trim: it may lag
                except sqlite3.Error as exc:  # logged by the hub, at a bounded rate
                    self._recount(db)
                    error = exc
                for _, _, done in batches:
                    self._call_loop(done, error)
                if stop:
                    return
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _checkpoint_loop(self, db: sqlite3.Connection) -> None:
        """Move the WAL into the database now and then, off the writer's path,
        and check that the file is still where it was."""
        try:
            while not self._stop.wait(CHECKPOINT_EVERY):
                self._check_file()
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy now: next time; else say so
                    if exc.sqlite_errorname not in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                        self._checkpoint_failures.log(
                            logging.ERROR, "history: cannot checkpoint %s: %s", self.path, exc
                        )
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()

    def _check_file(self) -> None:
        """The database file deleted, moved or replaced while in use: the server
        goes on writing to it, but the next start will not find it. Say so,
        and how to keep the history (ids go on above it either way)."""
        try:
            deleted = os.fstat(self._lock_fd).st_nlink == 0
            try:
                now = os.stat(self.path)
                here: tuple[int, int] | None = (now.st_dev, now.st_ino)
            except FileNotFoundError:
                here = None
        except OSError:
            return  # cannot tell now (a folder on the way went unsearchable): next time
        if here == self._file_id and not deleted:
            if self._file_state:
                self._file_state = ""
                self._file_lost.reset()
                log.warning("history: %s is the database in use again", self.path)
            return
        copy = f"/proc/{os.getpid()}/fd/{self._lock_fd}"
        if here is None and deleted:
            what = "was deleted"
            plan = f"copy {copy} to {self.path} and restart the server"
        elif here is None:
            what = "was moved away"
            plan = f"move it back, or copy {copy} to {self.path} and restart the server"
        else:
            what = "was replaced by another file"
            plan = f"copy {copy} over {self.path} and restart the server"
        if what != self._file_state:  # news: said at once
            self._file_state = what
            self._file_lost.reset()
        self._file_lost.log(
            logging.ERROR,
            "history: %s %s while in use: messages from now on will be lost at the next"
            " start; to keep the history, %s",
            self.path,
            what,
            plan,
        )

    def _call_loop(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop_call is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop_call(fn, *args)

    def _prune(self, db: sqlite3.Connection) -> None:
        """Index every chunk, then retention in one pass (start-up, tools): the
        newest ``per_room`` messages of every room, none older than ``max_days``."""
        try:
            with db:
                self._index(db, self._last_id)
                for room, n in _room_counts(db).items():
                    if n > self.per_room:
                        self._drop_oldest(db, room, n - self.per_room)
                if self.max_days is not None:
                    cutoff = _iso(datetime.now(UTC) - timedelta(days=self.max_days))
                    old = db.execute(
                        "SELECT id, room, msgs FROM chunks WHERE ts < ?", (cutoff,)
                    ).fetchall()
                    for key, room, msgs in old:
                        rows = loads(msgs)
                        self._replace(db, key, room, rows, [r for r in rows if r[2] >= cutoff])
                    self._call_loop(self._forget_before, cutoff)
            self._indexed = self._indexing
        except sqlite3.Error as exc:
            self._indexing = self._indexed
            log.error("history: cannot prune %s: %s", self.path, exc)

    def prune_now(self) -> None:
        """A whole retention pass at once (tests and tools; nothing else may be
        committing meanwhile)."""
        db = self._open(self.path, False)
        try:
            self._prune(db)
            self._recount(db)
        finally:
            db.close()
        self._deletes += 1
        self._trim()


_SELECT_INDEXED = "SELECT c.msgs FROM room_ids AS r CROSS JOIN chunks AS c ON c.id = r.id"

Chunk = tuple[int, str, int, str, str]
"""A row of ``chunks``: one room's messages of one commit, (first id, room,
how many, first ts, the messages as JSON)."""


def _chunk(rows: list[Row]) -> Chunk:
    first = rows[0]
    return (first[0], first[1], len(rows), first[2], dumps(rows).decode())


def _chunks(rows: list[Row]) -> list[Chunk]:
    """A commit's messages as one chunk per room, each in its room's order."""
    by_room: dict[str, list[Row]] = {}
    for row in rows:
        group = by_room.get(row[1])
        if group is None:
            by_room[row[1]] = [row]
        else:
            group.append(row)
    return [_chunk(group) for group in by_room.values()]


def _room_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Messages per room."""
    return dict(db.execute("SELECT room, sum(n) FROM chunks GROUP BY room").fetchall())


def _delete_upto(db: sqlite3.Connection, room: str, last: int) -> None:
    """Delete a room's indexed chunks up to id ``last``, from both tables."""
    db.execute(
        "DELETE FROM chunks WHERE id IN (SELECT id FROM room_ids WHERE room = ? AND id <= ?)",
        (room, last),
    )
    db.execute("DELETE FROM room_ids WHERE room = ? AND id <= ?", (room, last))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
