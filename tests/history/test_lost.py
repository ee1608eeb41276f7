"""A database deleted or replaced under the running server, and ids that never go back."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatserver import ratelog, sqlite_history
from chatserver.protocol import MsgEvent, format_ts
from chatserver.sqlite_history import ID_LIMIT, HistoryError, SQLiteHistory, id_floor
from tests.helpers import TIMEOUT, Client, ProcessServer
from tests.history.support import wait_until, watching_log

pytestmark = pytest.mark.timeout(60)


def _say(store: SQLiteHistory, n: int, room: str = "lobby") -> list[int]:
    """Commit ``n`` messages; their ids."""
    ts = format_ts(datetime.now(UTC).timestamp())

    async def go() -> list[int]:
        ids = []
        for i in range(n):
            ids.append(store.allocate_id())
            store.append(MsgEvent(ids[-1], ts, room, "alice", f"m{i}"))
        done = asyncio.get_running_loop().create_future()
        store.commit(done.set_result)
        assert await done is None
        return ids

    return asyncio.run(go())


def _files(db: Path) -> list[Path]:
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


def test_ids_start_at_the_clocks_floor_and_stay_below_2_53(tmp_path: Path) -> None:
    floor = id_floor()
    store = SQLiteHistory(tmp_path / "new.db")
    try:
        first = store.allocate_id()
        assert floor < first <= id_floor() + 1 < ID_LIMIT
        # About the milliseconds since the epoch, times 1 000, for centuries.
        assert floor // 1000 == pytest.approx(datetime.now(UTC).timestamp() * 1000, abs=60_000)
        assert (datetime(2255, 1, 1, tzinfo=UTC).timestamp() * 1000) * 1000 < ID_LIMIT
    finally:
        store.close()


@pytest.mark.parametrize("loss", ["deleted", "backup-restored"])
def test_ids_never_go_back_after_the_database_is_lost(tmp_path: Path, loss: str) -> None:
    db = tmp_path / "history.db"
    store = SQLiteHistory(db)
    _say(store, 5)
    store.close()
    backup = tmp_path / "backup.db"
    shutil.copyfile(db, backup)
    store = SQLiteHistory(db)
    handed = [*_say(store, 20), store.allocate_id()]  # a direct message's id too
    store.close()

    if loss == "deleted":
        for f in _files(db):
            f.unlink(missing_ok=True)
    else:  # an older copy put back: it knows nothing of the last 21 ids
        shutil.copyfile(backup, db)
    store = SQLiteHistory(db)
    try:
        after = _say(store, 3)
        assert min(after) > max(handed)
    finally:
        store.close()


def test_ids_that_ran_out_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    SQLiteHistory(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_id'", (ID_LIMIT - 10,))
    with pytest.raises(HistoryError, match=r"its ids have run out"):
        SQLiteHistory(db)


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is checked (and the WAL checkpointed) every 20 ms, not every second."""
    monkeypatch.setattr(sqlite_history, "CHECKPOINT_EVERY", 0.02)


@pytest.mark.usefixtures("quick_checks")
def test_a_deleted_database_is_noticed_and_logged_at_a_bounded_rate(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with watching_log() as watch:
        store = SQLiteHistory(db)
        try:
            _say(store, 3)
            for f in _files(db):  # rm history.db*
                f.unlink(missing_ok=True)
            level, line = watch.wait("was deleted while in use")
            assert level == logging.ERROR
            assert f"{db} was deleted while in use: messages from now on will be lost" in line
            assert f"copy /proc/{os.getpid()}/fd/" in line and "restart the server" in line
            # Checked again and again; said once a minute: the next checks say nothing.
            wait_until(lambda: store._file_lost._left_out >= 2, "two more checks")
            assert len(watch.matching("was deleted")) == 1
            _say(store, 2)  # the store goes on meanwhile (into the unlinked file)
        finally:
            store.close()


@pytest.mark.usefixtures("quick_checks")
def test_a_moved_or_replaced_database_is_noticed(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    moved = tmp_path / "moved.db"
    other = tmp_path / "other.db"
    SQLiteHistory(other).close()
    with watching_log() as watch:
        store = SQLiteHistory(db)
        try:
            os.replace(db, moved)
            watch.wait(f"{db} was moved away while in use: .* move it back")
            os.replace(moved, db)
            watch.wait(f"{db} is the database in use again")
            os.replace(other, db)
            watch.wait(f"{db} was replaced by another file while in use")
        finally:
            store.close()


def test_the_throttle_says_once_then_once_a_period(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(ratelog.time, "monotonic", lambda: now[0])
    throttle = ratelog.Throttle()
    with watching_log() as watch:
        for _ in range(5):
            throttle.log(logging.ERROR, "disk %s", "bad")
        now[0] += ratelog.LOG_EVERY
        throttle.log(logging.ERROR, "disk %s", "bad")
        assert throttle.reset()
        throttle.log(logging.ERROR, "disk %s", "bad")
    assert [line for _, line in watch.lines] == [
        "disk bad",
        "disk bad (4 more since the last such line)",
        "disk bad",
    ]


def test_a_server_whose_database_was_deleted_says_so_and_its_ids_go_on(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    first = ProcessServer("--db", str(db), "--msg-rate", "0")
    try:
        alice = Client(first.port)
        alice.hello("alice", rooms=["lobby"])
        alice.expect("history", room="lobby")
        seen = []
        for i in range(5):
            alice.send({"type": "say", "text": f"before {i}", "ref": i})
            seen.append(alice.expect("msg", ref=i)["id"])
        for f in _files(db):
            f.unlink(missing_ok=True)
        line = first.wait_log("was deleted while in use")
        assert " ERROR " in line and "will be lost at the next start" in line
        alice.send({"type": "say", "text": "into the void", "ref": "v"})
        seen.append(alice.expect("msg", ref="v")["id"])
        alice.close()
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(TIMEOUT) == 0
    finally:
        first.stop()

    again = ProcessServer("--db", str(db), "--msg-rate", "0")
    try:
        bob = Client(again.port)
        bob.hello("bob", rooms=["lobby"])
        assert bob.expect("history", room="lobby")["messages"] == []  # lost, as it said
        bob.send({"type": "say", "text": "after", "ref": 1})
        assert bob.expect("msg", ref=1)["id"] > max(seen)  # not back at 1
        bob.close()
    finally:
        again.stop()
