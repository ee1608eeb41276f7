"""A database damaged in the middle: refused at start; a read that fails later, a clear error."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatserver.history import HistoryUnavailable
from chatserver.protocol import MsgEvent, format_ts
from chatserver.sqlite_history import HistoryError, SQLiteHistory
from tests.helpers import Client, ProcessServer
from tests.history.support import one_line_refusal, start, watching_log
from tests.server.support import assert_alive

pytestmark = pytest.mark.timeout(60)

PAGE = 4096
PER_ROOM = 1_000_000  # no retention here


def _fill(store: SQLiteHistory, room: str, prefix: str, chunks: int, per_chunk: int) -> None:
    """``chunks`` commits of ``per_chunk`` messages to one room: its chunks lie
    side by side in the file, on pages of their own."""
    ts = format_ts(datetime.now(UTC).timestamp())

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for c in range(chunks):
            for i in range(per_chunk):
                n = c * per_chunk + i
                text = f"{prefix}-{n:06d} " + "an ordinary line of chat " * 3
                store.append(MsgEvent(store.allocate_id(), ts, room, "alice", text))
            done = loop.create_future()
            store.commit(done.set_result)
            assert await done is None

    asyncio.run(go())


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real database written by the store: room ``early``, then ``bad``
    (about 25 pages), then ``late``, big enough (8 MB) that an open store's
    page cache (2 MB) no longer holds what a start-up scan read of ``bad``."""
    path = tmp_path_factory.mktemp("damage") / "healthy.db"
    store = SQLiteHistory(path, per_room=PER_ROOM)
    _fill(store, "early", "EARLY", 50, 10)
    _fill(store, "bad", "BAD", 100, 5)
    _fill(store, "late", "LATE", 2000, 20)
    store.close()  # checkpointed: every page is in the file, no WAL left
    assert not Path(str(path) + "-wal").exists()
    return path


def _damage(path: Path, marker: str) -> int:
    """Overwrite the page that holds ``marker`` (the first bytes of a chunks
    b-tree leaf: its header and cell pointers) with garbage, as a bad disk
    sector or a stray write would; return its page number."""
    data = path.read_bytes()
    at = data.find(marker.encode())
    assert at > 0, marker
    page = at // PAGE
    assert 0 < page < len(data) // PAGE - 1  # in the middle of the file
    with open(path, "r+b") as f:
        f.seek(page * PAGE)
        f.write(b"\xa5" * 64)
    return page + 1


def _copy(healthy: Path, tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    shutil.copyfile(healthy, path)
    return path


def _read_all(store: SQLiteHistory, room: str) -> list[MsgEvent]:
    """Every message of a room, paging back from the newest."""
    got: list[MsgEvent] = []
    before = None
    while True:
        page, more = store.page(room, before, 50)
        got = page + got
        if not more:
            return got
        before = page[0].id


def test_damage_in_the_middle_is_refused_at_start(healthy: Path, tmp_path: Path) -> None:
    path = _copy(healthy, tmp_path)
    _damage(path, "BAD-000250")
    with pytest.raises(HistoryError) as caught:
        SQLiteHistory(path)
    message = str(caught.value)
    assert message.startswith(f"cannot use {path}: the database is damaged (")
    assert "restore it from a backup" in message and "\n" not in message


def test_a_damaged_database_stops_the_server_with_one_line(healthy: Path, tmp_path: Path) -> None:
    path = _copy(healthy, tmp_path)
    page = _damage(path, "LATE-020000")
    result = start("--db", str(path))
    one_line_refusal(result, rf"ERROR cannot use .*history\.db: the database is damaged \(.*{page}")


def test_a_read_that_fails_after_start_is_a_clear_error(healthy: Path, tmp_path: Path) -> None:
    path = _copy(healthy, tmp_path)
    store = SQLiteHistory(path, per_room=PER_ROOM)  # the start-up check passes
    try:
        # The page goes bad under the running server: the next read that needs
        # it (paging back, a resume) fails, with HistoryUnavailable.
        _damage(path, "BAD-000250")
        with watching_log() as watch:
            with pytest.raises(
                HistoryUnavailable, match=r"^the history of bad cannot be read now$"
            ):
                _read_all(store, "bad")
            with pytest.raises(HistoryUnavailable):
                store.after("bad", 0)
            # Logged once: a join a second to that room makes no log flood.
            failures = watch.matching("cannot read room bad")
            assert len(failures) == 1, watch.lines
            level, line = failures[0]
            assert level == logging.ERROR and "malformed" in line, line

        # The other rooms read on, the store writes on.
        assert [m.text[:12] for m in _read_all(store, "early")] == [
            f"EARLY-{n:06d}" for n in range(500)
        ]
        assert len(_read_all(store, "late")) == 40_000
        _fill(store, "late", "AFTER", 1, 3)
        assert [m.text[:12] for m in store.page("late", None, 3)[0]] == [
            f"AFTER-{n:06d}" for n in range(3)
        ]
    finally:
        store.close()
    with pytest.raises(HistoryError, match="the database is damaged"):
        SQLiteHistory(path)  # and the next start says so


def test_the_start_up_check_passes_a_healthy_database(healthy: Path, tmp_path: Path) -> None:
    # The control for the tests above: the same file, undamaged, opens and reads.
    path = _copy(healthy, tmp_path)
    store = SQLiteHistory(path, per_room=PER_ROOM)
    try:
        assert len(_read_all(store, "bad")) == 500
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_join_to_a_damaged_room_is_answered_not_dropped(healthy: Path, tmp_path: Path) -> None:
    """The room's backlog cannot be read: the joiner is answered `unavailable`
    in its place and stays connected; the other rooms carry on."""
    path = _copy(healthy, tmp_path)
    # (No retention at start: it would rewrite pages next to the damaged one.)
    server = ProcessServer("--db", str(path), "--msg-rate", "0", "--history-max", str(PER_ROOM))
    try:
        alice = Client(server.port)
        alice.hello("alice", rooms=["late"])
        alice.expect("history", room="late")
        _damage(path, "BAD-000499")  # the newest chunks of bad: its backlog reads them
        alice.send({"type": "join", "room": "bad", "ref": "j"})
        alice.expect("join", room="bad")
        error = alice.expect("error", ref="j")
        assert error["code"] == "unavailable" and "bad" in error["message"]
        assert not [e for e in alice.skipped if e["type"] == "history"]
        alice.send({"type": "history", "room": "bad", "ref": "h"})
        assert alice.expect("error", ref="h")["code"] == "unavailable"
        assert_alive(alice)
        alice.send({"type": "say", "room": "late", "text": "still here", "ref": "s"})
        assert alice.expect("msg", ref="s")["room"] == "late"
        server.wait_log(r"ERROR history: cannot read room bad")
    finally:
        server.stop()
