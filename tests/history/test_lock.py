"""One server per database file, however it is named: same path, symlink, hard link, relative."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chatserver.sqlite_history import HistoryError, SQLiteHistory
from tests.helpers import TIMEOUT, Client, ProcessServer
from tests.history.support import one_line_refusal, start

pytestmark = pytest.mark.timeout(60)


def _same(db: Path) -> str:
    return str(db)


def _symlink(db: Path) -> str:
    link = db.parent.parent / "elsewhere" / "link.db"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(db)
    return str(link)


def _hard_link(db: Path) -> str:
    other = db.parent.parent / "elsewhere" / "other.db"
    other.parent.mkdir(exist_ok=True)
    os.link(db, other)
    return str(other)


def _relative(db: Path) -> str:
    # Another spelling of the same path, from another folder.
    return os.path.relpath(db, db.parent.parent / "elsewhere")


NAMES: dict[str, Callable[[Path], str]] = {
    "same-path": _same,
    "symlink": _symlink,
    "hard-link": _hard_link,
    "relative-path": _relative,
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "data" / "history.db"
    SQLiteHistory(path).close()  # the file exists, as a hard link needs
    return path


def _wal_survives_another_process(db: Path) -> bool:
    """Whether this process still holds SQLite's locks on the file: a
    connection from another process that opens and closes must not take
    itself for the last one, which checkpoints and deletes the WAL."""
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " c.execute('SELECT 1 FROM meta'); c.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=TIMEOUT)
    return Path(str(db) + "-wal").exists()


@pytest.mark.parametrize("name", list(NAMES))
def test_a_second_store_in_this_process_is_refused(
    db: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(db.parent.parent / "elsewhere")
    other = NAMES[name](db)
    store = SQLiteHistory(db)
    try:
        with pytest.raises(HistoryError, match=r"^\S+ is in use by another chatserver$"):
            SQLiteHistory(other)
        # The refusal closed no descriptor of the file: SQLite's own (POSIX)
        # locks, which any close() of the file in this process would drop,
        # are still there.
        assert _wal_survives_another_process(db)
    finally:
        store.close()
    SQLiteHistory(other).close()  # free again once the first is closed


def test_the_first_store_through_a_symlink_holds_the_real_path_too(db: Path) -> None:
    link = _symlink(db)
    store = SQLiteHistory(link)
    try:
        with pytest.raises(HistoryError, match="in use by another chatserver"):
            SQLiteHistory(db)
    finally:
        store.close()


@pytest.mark.parametrize("name", list(NAMES))
def test_a_second_server_process_is_refused(db: Path, name: str) -> None:
    elsewhere = db.parent.parent / "elsewhere"
    other = NAMES[name](db)
    running = ProcessServer("--db", str(db), "--msg-rate", "0")
    try:
        client = Client(running.port)
        client.hello("alice", rooms=["lobby"])
        client.expect("history", room="lobby")
        client.send({"type": "say", "text": "before", "ref": 1})
        first = client.expect("msg", ref=1)["id"]

        one_line_refusal(start("--db", other, cwd=elsewhere), "in use by another chatserver")

        # The running server is untouched: it goes on, its ids go on.
        assert running.proc.poll() is None
        client.send({"type": "say", "text": "after", "ref": 2})
        assert client.expect("msg", ref=2)["id"] == first + 1
        assert _wal_survives_another_process(db)
        client.close()
    finally:
        running.stop()
