"""A database, WAL or -shm file the server could not write is refused at start, for root too."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatserver.sqlite_history import HistoryError, SQLiteHistory
from tests.helpers import TIMEOUT
from tests.history.support import one_line_refusal, start

pytestmark = pytest.mark.timeout(60)

SUFFIXES = ["", "-wal", "-shm"]

# A store that commits three messages, then dies by SIGKILL: its -wal and
# -shm stay behind, as after a crash.
CRASH = """
import asyncio, os, signal, sys
from chatserver.protocol import MsgEvent
from chatserver.sqlite_history import SQLiteHistory

store = SQLiteHistory(sys.argv[1])

async def go():
    for i in range(3):
        msg = MsgEvent(store.allocate_id(), "2026-12-01T10:00:00.000Z", "lobby", "a", f"m{i}")
        store.append(msg)
    done = asyncio.get_running_loop().create_future()
    store.commit(done.set_result)
    assert await done is None

asyncio.run(go())
os.kill(os.getpid(), signal.SIGKILL)
"""


def _crash(db: Path, **popen: Any) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, str(db)], timeout=TIMEOUT, **popen)
    assert proc.returncode == -signal.SIGKILL, proc
    assert all(Path(f"{db}{suffix}").exists() for suffix in SUFFIXES)


def _messages(db: Path) -> list[str]:
    store = SQLiteHistory(db)
    try:
        return [m.text for m in store.page("lobby", None, 50)[0]]
    finally:
        store.close()


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Files to be made immutable (chattr +i: unwritable for root too), made
    mutable again after the test; skips where chattr cannot do it."""
    probe = tmp_path / "probe"
    probe.touch()
    try:
        done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("chattr is not installed (e2fsprogs)")
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    files: list[Path] = []
    yield files
    for f in files:
        subprocess.run(["chattr", "-i", str(f)], check=True)


@pytest.mark.parametrize("suffix", SUFFIXES, ids=["db", "wal", "shm"])
def test_an_immutable_file_is_refused(tmp_path: Path, suffix: str, immutable: list[Path]) -> None:
    db = tmp_path / "history.db"
    _crash(db)
    target = Path(f"{db}{suffix}")
    subprocess.run(["chattr", "+i", str(target)], check=True)
    immutable.append(target)
    expected = "it cannot be written" if not suffix else f"{target} cannot be written"
    with pytest.raises(
        HistoryError, match=rf"^cannot use {db}: {expected} \(Operation not permitted\)$"
    ):
        SQLiteHistory(db)
    subprocess.run(["chattr", "-i", str(target)], check=True)
    immutable.remove(target)
    assert _messages(db) == ["m0", "m1", "m2"]  # untouched by the refusal


def _no_dac_override() -> None:
    """In the child, before exec: root loses CAP_DAC_OVERRIDE (prctl
    PR_CAPBSET_DROP), so a file's mode binds it like anyone else."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def mode_binds(tmp_path: Path) -> dict[str, Any]:
    """The subprocess arguments under which a file whose mode says read-only
    is read-only: none for a user; for root (CI), root without the
    capability that overrides modes. Checked on a probe first."""
    popen: dict[str, Any] = {} if os.geteuid() != 0 else {"preexec_fn": _no_dac_override}
    probe = tmp_path / "probe"
    probe.touch(mode=0o444)
    code = "import os, sys; os.open(sys.argv[1], os.O_RDWR)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(probe)], capture_output=True, timeout=TIMEOUT, **popen
        )
    except subprocess.SubprocessError as exc:  # the prctl was refused (no CAP_SETPCAP)
        pytest.skip(f"root here cannot give up CAP_DAC_OVERRIDE: {exc}")
    if done.returncode == 0:
        pytest.skip("a file with mode 0444 is writable here even so")
    probe.unlink()
    return popen


@pytest.mark.parametrize("suffix", SUFFIXES, ids=["db", "wal", "shm"])
def test_a_read_only_file_stops_the_server_with_one_line(
    tmp_path: Path, suffix: str, mode_binds: dict[str, Any]
) -> None:
    # The case: the -shm read-only (say, left by a tool run as another
    # user). The server ran on, then died of SIGBUS at the first write.
    db = tmp_path / "history.db"
    _crash(db)
    target = Path(f"{db}{suffix}")
    target.chmod(0o444)
    result = start("--db", str(db), **mode_binds)
    expected = "it cannot be written" if not suffix else f"{target} cannot be written"
    one_line_refusal(result, rf"ERROR cannot use {db}: {expected} \(Permission denied\)$")

    # Writable again: the same server starts on the same files, history intact.
    target.chmod(0o644)
    cmd = [sys.executable, "-m", "chatserver", "--port", "0", "--loop", "asyncio", "--db", str(db)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, **mode_binds)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    assert _messages(db) == ["m0", "m1", "m2"]
