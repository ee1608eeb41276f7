"""SQLiteHistory on a real file: ids, reads before and after commits, retention, schema."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatserver import sqlite_history
from chatserver.history import MemoryHistory
from chatserver.protocol import MsgEvent, format_ts
from chatserver.sqlite_history import SCHEMA_VERSION, HistoryError, SQLiteHistory

TIMEOUT = 10


class Loop:
    """Just enough of an event loop to run the store's commit callbacks."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        async def wrapper():  # type: ignore[no-untyped-def]
            return fn(*args)

        return self.loop.run_until_complete(wrapper())

    def commit(self, store: SQLiteHistory) -> None:
        """Commit what was appended and wait until the store says it is on disk."""
        done = self.loop.create_future()

        async def go() -> None:
            store.commit(lambda error: done.set_result(error))
            assert await done is None

        self.loop.run_until_complete(go())


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.loop.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "history.db"


def say(store: SQLiteHistory, room: str, text: str, ts: str | None = None) -> MsgEvent:
    msg = MsgEvent(
        id=store.allocate_id(),
        ts=ts or format_ts(datetime.now(UTC).timestamp()),
        room=room,
        from_="alice",
        text=text,
    )
    store.append(msg)
    return msg


def rows(path: Path) -> list[tuple]:
    """Every stored message as (id, room, sender, text), in id order, out of its chunk."""
    with sqlite3.connect(path) as conn:
        chunks = conn.execute("SELECT id, room, n, ts, msgs FROM chunks").fetchall()
    found = []
    for key, room, n, ts, msgs in chunks:
        msgs = json.loads(msgs)
        # A chunk is named after its first message and counts what it holds.
        assert (key, room, n, ts) == (msgs[0][0], msgs[0][1], len(msgs), msgs[0][2])
        assert all(m[1] == room for m in msgs)
        found += [(m[0], m[1], m[3], m[4]) for m in msgs]
    return sorted(found)


def count(path: Path, room: str) -> int:
    return sum(1 for row in rows(path) if row[1] == room)


def test_messages_and_ids_survive_a_reopen(db: Path, loop: Loop) -> None:
    store = SQLiteHistory(db)
    sent = [say(store, "lobby", f"m{i}") for i in range(5)]
    loop.commit(store)
    dm_id = store.allocate_id()  # a direct message: an id, no row
    loop.commit(store)
    store.close()
    assert rows(db) == [(m.id, "lobby", "alice", m.text) for m in sent]

    again = SQLiteHistory(db)
    try:
        assert again.page("lobby", None, 50) == (sent, False)
        assert again.allocate_id() > dm_id  # never reused, the DM's id included
    finally:
        again.close()


def test_reads_see_messages_not_committed_yet(db: Path, loop: Loop) -> None:
    store = SQLiteHistory(db)
    try:
        first = [say(store, "r", f"a{i}") for i in range(3)]
        loop.commit(store)
        pending = [say(store, "r", f"b{i}") for i in range(2)]  # appended, not committed
        assert rows(db) == [(m.id, "r", "alice", m.text) for m in first]
        assert store.page("r", None, 50) == (first + pending, False)
        assert store.after("r", first[0].id) == (first[1:] + pending, True)
        assert store.page("r", pending[0].id, 2) == (first[1:], True)
    finally:
        store.close()
    # close() commits what was left
    assert [r[3] for r in rows(db)] == ["a0", "a1", "a2", "b0", "b1"]


def test_paging_reaches_past_the_memory_tail(db: Path, loop: Loop) -> None:
    store = SQLiteHistory(db)
    sent = [say(store, "big", f"m{i}") for i in range(600)]  # more than the tail keeps
    loop.commit(store)
    store.close()
    store = SQLiteHistory(db)  # nothing in memory at all now
    try:
        got: list[MsgEvent] = []
        before = None
        while True:
            page, more = store.page("big", before, 100)
            got = page + got
            if not more:
                break
            before = page[0].id
        assert got == sent
        assert store.after("big", sent[449].id) == (sent[450:], True)
        assert store.after("big", 0) == (sent, False)
        assert store.page("other", None, 10) == ([], False)
    finally:
        store.close()


def test_reads_across_chunks_tails_and_the_index_batches(
    db: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits of every size over three rooms: chunks of 1 to 13 messages, an
    # index batch every 25 ids and tails of 7, so that pages and resumes
    # start and end inside chunks, in the tails and across both.
    monkeypatch.setattr(sqlite_history, "INDEX_EVERY", 3600.0)
    monkeypatch.setattr(sqlite_history, "INDEX_BATCH", 25)
    monkeypatch.setattr(sqlite_history, "CACHE_PER_ROOM", 7)
    rooms = ["a", "b", "c"]
    sent: dict[str, list[MsgEvent]] = {room: [] for room in rooms}
    store = SQLiteHistory(db)

    def check() -> None:
        for room, msgs in sent.items():
            for limit in (1, 4, 9):
                got: list[MsgEvent] = []
                before = None
                while True:
                    page, more = store.page(room, before, limit)
                    assert len(page) == limit or not more
                    got = page + got
                    if not more:
                        break
                    before = page[0].id
                assert got == msgs
            for i, msg in enumerate(msgs):
                assert store.after(room, msg.id) == (msgs[i + 1 :], True)
                assert store.page(room, msg.id, 3) == (msgs[max(0, i - 3) : i], i > 3)

    try:
        for n in range(40):
            for i in range(n % 14):
                room = rooms[(n + i * i) % 3]
                sent[room].append(say(store, room, f"{n}.{i}"))
            loop.commit(store)
        check()
    finally:
        store.close()
    store = SQLiteHistory(db)  # nothing in memory
    try:
        check()
    finally:
        store.close()


def test_retention_by_count_and_the_paging_edge(db: Path, loop: Loop) -> None:
    store = SQLiteHistory(db, per_room=5)
    try:
        sent = [say(store, "r", f"m{i}") for i in range(12)]
        other = say(store, "quiet", "kept")
        loop.commit(store)
        store.prune_now()
        assert [r[3] for r in rows(db)] == ["m7", "m8", "m9", "m10", "m11", "kept"]
        assert store.page("r", None, 50) == (sent[7:], False)
        # At the edge: nothing older, and "more" says so.
        assert store.page("r", sent[7].id, 50) == ([], False)
        assert store.page("r", sent[9].id, 50) == (sent[7:9], False)
        assert store.after("r", sent[2].id) == (sent[7:], False)
        assert store.page("quiet", None, 5) == ([other], False)
    finally:
        store.close()


def test_retention_by_age(db: Path, loop: Loop) -> None:
    store = SQLiteHistory(db, max_days=1)
    try:
        old_ts = format_ts((datetime.now(UTC) - timedelta(days=3)).timestamp())
        old = [say(store, "r", f"old{i}", ts=old_ts) for i in range(3)]
        new = [say(store, "r", f"new{i}") for i in range(2)]
        loop.commit(store)
        store.prune_now()
        assert [r[3] for r in rows(db)] == ["new0", "new1"]
        loop.run(lambda: None)  # the tails forget them on the loop's thread
        assert store.page("r", None, 50) == (new, False)
        assert old[0].id < new[0].id
    finally:
        store.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_commits_keep_retention_in_bounded_steps(db: Path, loop: Loop, fsync: bool) -> None:
    # No separate pass: the commits themselves delete the oldest messages once
    # a room is over --history-max by its slack, at most PRUNE_STEP at once.
    store = SQLiteHistory(db, per_room=40, fsync=fsync)
    try:
        sent = []
        for _ in range(10):
            sent += [say(store, "busy", f"m{len(sent)}") for _ in range(30)]
            loop.commit(store)
            kept = [r[3] for r in rows(db)]
            assert min(40, len(sent)) <= len(kept) <= 40 + store._slack
            assert kept == [m.text for m in sent[-len(kept) :]]  # the newest, in order
        # A room over the limit by far loses at most a chunk per commit.
        sent += [say(store, "flood", "x") for _ in range(sqlite_history.PRUNE_STEP + 100)]
        loop.commit(store)
        assert count(db, "flood") == 100
        say(store, "flood", "y")
        loop.commit(store)
        assert count(db, "flood") == 40
    finally:
        store.close()


def test_retention_by_age_in_the_commits_and_at_start_up(
    db: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_ts = format_ts((datetime.now(UTC) - timedelta(days=3)).timestamp())
    store = SQLiteHistory(db)
    first = [say(store, "r", f"old{i}", ts=old_ts) for i in range(5)]
    store.close()
    store = SQLiteHistory(db, max_days=1)  # start-up applies the new retention at once
    store.close()
    assert rows(db) == []
    monkeypatch.setattr(sqlite_history, "PRUNE_EVERY", 0.0)
    monkeypatch.setattr(sqlite_history, "PRUNE_STEP", 3)
    store = SQLiteHistory(db, max_days=1)
    try:
        # Five rooms: a chunk each. Room r4's chunk ends with a young message.
        old = [say(store, f"r{i}", f"old{i}", ts=old_ts) for i in range(5)]
        new = [say(store, "r4", "new0")]
        loop.commit(store)  # written, then the age pass finds them: 3 chunks go
        assert [r[3] for r in rows(db)] == ["old3", "old4", "new0"]
        new.append(say(store, "r4", "new1"))
        loop.commit(store)  # the other 2 (r4's keeps its young message)
        assert [r[3] for r in rows(db)] == ["new0", "new1"]
        loop.run(lambda: None)  # the tails forget them on the loop's thread
        assert store.page("r4", None, 50) == (new, False)
        assert store.page("r0", None, 50) == ([], False)
        # Ids keep increasing, even when retention took every message.
        assert first[-1].id < old[0].id and old[-1].id < new[0].id
    finally:
        store.close()


def test_schema_version_and_a_newer_schema_is_refused(db: Path) -> None:
    SQLiteHistory(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match="newer chatserver"):
        SQLiteHistory(db)


def test_a_second_store_on_the_same_file_is_refused(db: Path) -> None:
    store = SQLiteHistory(db)
    try:
        with pytest.raises(HistoryError, match="in use by another chatserver"):
            SQLiteHistory(db)
    finally:
        store.close()
    SQLiteHistory(db).close()  # free again once the first is closed


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(HistoryError, match=r"cannot use .*notes\.txt: file is not a database"):
        SQLiteHistory(path)


def test_commits_group_many_messages(db: Path, loop: Loop) -> None:
    # One hand-over is one transaction, however many messages it holds.
    store = SQLiteHistory(db)
    try:
        for i in range(1000):
            say(store, f"r{i % 7}", f"m{i}")
        loop.commit(store)
        assert len(rows(db)) == 1000
        assert not store.has_pending()
    finally:
        store.close()


def test_with_fsync_a_writer_thread_commits(db: Path, loop: Loop) -> None:
    # --fsync: commits wait for the disk, so they leave the loop's thread.
    store = SQLiteHistory(db, fsync=True)
    try:
        assert store._writer.is_alive()
        sent = [say(store, "r", f"m{i}") for i in range(50)]
        loop.commit(store)
        assert [r[3] for r in rows(db)] == [m.text for m in sent]
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
    assert not store._writer.is_alive()


def room_index(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT room, id FROM room_ids ORDER BY id").fetchall()


@pytest.mark.parametrize("fsync", [False, True])
def test_rows_wait_for_the_room_index_in_their_tail(
    db: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    # Rows reach the room index in batches; until then reads find them in the
    # room's tail, which keeps them however short it is meant to be.
    monkeypatch.setattr(sqlite_history, "INDEX_EVERY", 3600.0)
    monkeypatch.setattr(sqlite_history, "INDEX_BATCH", 50)
    monkeypatch.setattr(sqlite_history, "CACHE_PER_ROOM", 4)
    store = SQLiteHistory(db, fsync=fsync)
    try:
        first = [say(store, f"r{i % 2}", f"m{i}") for i in range(40)]
        loop.commit(store)
        assert len(rows(db)) == 40 and room_index(db) == []
        assert store.page("r0", None, 100) == (first[0::2], False)
        assert store.after("r1", first[1].id) == (first[3::2], True)
        more = [say(store, f"r{i % 2}", f"n{i}") for i in range(20)]
        loop.commit(store)  # 60 ids waiting: a batch of 50 is indexed
        # A commit stores a chunk per room, named after its first message: the
        # batch takes every chunk that starts within its 50 ids.
        chunks = [first[0], first[1], more[0], more[1]]
        assert room_index(db) == [(m.room, m.id) for m in chunks]
        loop.run(lambda: None)
        assert len(store._tails["r0"]) == 5  # longer than 4: its 5 rows not indexed yet
        assert store.page("r0", None, 100) == ((first + more)[0::2], False)
    finally:
        store.close()
    store = SQLiteHistory(db)  # start-up indexes the rest (a crash leaves them too)
    try:
        assert room_index(db) == [(m.room, m.id) for m in chunks]
        assert store.page("r1", None, 100) == ((first + more)[1::2], False)
        assert store.after("r0", more[0].id) == (more[2::2], True)
    finally:
        store.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_is_upgraded(db: Path, version: int) -> None:
    # Schema 1: messages with an index on (room, id); 2: a room index filled
    # in batches (here up to id 10); 3: messages in chunks.
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        for step in range(version):
            conn.executescript(sqlite_history.MIGRATIONS[step])
        conn.execute(f"PRAGMA user_version = {version}")
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, '2026-11-25T10:00:00.000Z', 'bob', ?, 0)",
            [(i, f"r{i % 3}", f"m{i}") for i in range(1, 31)],
        )
        conn.execute("UPDATE meta SET value = 32 WHERE key = 'last_id'")  # 31, 32: dms
        if version == 2:
            conn.execute("INSERT INTO room_ids SELECT room, id FROM messages WHERE id <= 10")
            conn.execute("UPDATE meta SET value = 10 WHERE key = 'indexed_id'")
    floor = sqlite_history.id_floor()
    store = SQLiteHistory(db)
    try:
        assert [m.text for m in store.page("r1", None, 5)[0]] == [
            f"m{i}" for i in (16, 19, 22, 25, 28)
        ]
        assert [m.text for m in store.after("r2", 20)[0]] == ["m23", "m26", "m29"]
        assert store.allocate_id() > floor > 32  # ids go on from the clock's floor
    finally:
        store.close()
    assert rows(db) == [(i, f"r{i % 3}", "bob", f"m{i}") for i in range(1, 31)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("SELECT count(*) FROM room_ids").fetchone()[0] == 30
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema")]
        assert "messages" not in tables


def test_kept_messages_cost_the_garbage_collector_nothing(db: Path, loop: Loop) -> None:
    # A full collection walks every object it tracks, and pauses the chat
    # meanwhile: the messages the stores keep must not be among them.
    import gc

    memory = MemoryHistory(per_room=1000)
    store = SQLiteHistory(db)
    try:
        for i in range(300):
            msg = say(store, f"r{i % 3}", f"m{i}")
            memory.allocate_id()
            memory.append(msg)
        loop.commit(store)
        gc.collect()
        kept = [row for tail in store._tails.values() for row in tail]
        kept += [row for room in memory._rooms.values() for row in room]
        assert len(kept) == 600
        assert not any(gc.is_tracked(row) for row in kept)
        assert store.page("r1", None, 2)[0] == memory.page("r1", None, 2)[0]
    finally:
        store.close()
