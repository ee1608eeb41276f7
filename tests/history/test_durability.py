"""Durable history with real server processes: kill -9, restarts, resume, start-up failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TIMEOUT, Client, ProcessServer
from tests.history.support import full_history, joined, one_line_refusal, start

pytestmark = pytest.mark.timeout(60)


def _read_msgs(client: Client, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    """Record every msg until the connection dies (the server is killed)."""
    while not stop.is_set():
        try:
            event = client.recv(timeout=0.5)
        except AssertionError:
            if client.eof:
                return
            continue
        if event["type"] == "msg":
            seen.append(event)


@pytest.mark.parametrize("mode", [(), ("--fsync",)], ids=["loop-commits", "fsync-writer-thread"])
def test_every_message_anyone_saw_survives_kill_9(tmp_path: Path, mode: tuple[str, ...]) -> None:
    # Both commit paths: the loop's own commits, and --fsync's writer thread
    # (the hub then holds each turn's bytes back until the thread is done).
    db = str(tmp_path / "history.db")
    server = ProcessServer("--db", db, "--msg-rate", "0", *mode)
    senders = [joined(server.port, f"s{i}") for i in range(3)]
    watcher = joined(server.port, "watcher")
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=_read_msgs, args=(watcher, seen, stop), daemon=True)
    reader.start()
    try:
        # Traffic until the watcher has seen a good number, then SIGKILL mid-flow.
        i = 0
        while len(seen) < 300:
            for s in senders:
                s.send({"type": "say", "text": f"{s.name}-{i}"})
            i += 1
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(TIMEOUT)
        reader.join(TIMEOUT)
    finally:
        stop.set()
        for c in [*senders, watcher]:
            c.close()
        server.stop()

    again = ProcessServer("--db", db)
    try:
        stored = {m["id"]: m for m in full_history(again.port)}
        for m in seen:  # every message the watcher saw, exactly as it saw it
            kept = stored.get(m["id"])
            assert kept is not None, f"lost after kill -9: {m}"
            assert (kept["from"], kept["text"], kept["ts"]) == (m["from"], m["text"], m["ts"])
        ids = [m["id"] for m in seen]
        assert ids == sorted(ids) and sorted(stored) == sorted(set(stored))
        # Order: the stored history lists them in the order they were seen.
        order = [i for i in sorted(stored) if i in set(ids)]
        assert order == ids

        late = joined(again.port, "late")
        late.send({"type": "say", "text": "after the crash", "ref": 1})
        echo = late.expect("msg", ref=1)
        assert echo["id"] > max(stored)
        late.close()
    finally:
        again.stop()


def test_resume_after_a_restart_gets_exactly_the_missed(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    first = ProcessServer("--db", db, "--msg-rate", "0")
    alice = joined(first.port, "alice")
    bob = joined(first.port, "bob")
    for i in range(5):
        bob.send({"type": "say", "text": f"seen {i}", "ref": i})
        bob.expect("msg", ref=i)
    last_seen = None
    for _ in range(5):
        last_seen = alice.expect("msg")["id"]
    alice.close()
    for i in range(4):  # alice is away
        bob.send({"type": "say", "text": f"missed before {i}", "ref": 10 + i})
        bob.expect("msg", ref=10 + i)
    bob.close()
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(TIMEOUT) == 0
    first.stop()

    second = ProcessServer("--db", db, "--msg-rate", "0")
    try:
        bob = joined(second.port, "bob")
        for i in range(3):
            bob.send({"type": "say", "text": f"missed after {i}", "ref": i})
            bob.expect("msg", ref=i)
        alice = Client(second.port)
        alice.hello("alice", rooms=["lobby"], since={"lobby": last_seen})
        replay = alice.expect("history", room="lobby")
        texts = [m["text"] for m in replay["messages"]]
        assert texts == [f"missed before {i}" for i in range(4)] + [
            f"missed after {i}" for i in range(3)
        ]
        ids = [m["id"] for m in replay["messages"]]
        assert ids == sorted(set(ids)) and ids[0] > last_seen
        # and nothing more comes twice: the next live message follows on
        bob.send({"type": "say", "text": "live", "ref": "live"})
        assert alice.expect("msg")["text"] == "live"
        alice.close()
        bob.close()
    finally:
        second.stop()


def test_start_up_refusals(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_refusal(start("--db", str(blocker / "history.db")), "is not a folder")

    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    one_line_refusal(start("--db", str(junk)), "file is not a database")

    folder = tmp_path / "folder.db"
    folder.mkdir()
    one_line_refusal(start("--db", str(folder)), "cannot use")


def test_a_second_server_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    running = ProcessServer("--db", db)
    try:
        one_line_refusal(start("--db", db), "in use by another chatserver")
        assert running.proc.poll() is None
        client = joined(running.port, "still-fine")
        client.close()
    finally:
        running.stop()


def test_the_default_file_is_made_under_xdg_data_home(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "chatserver", "--port", "0", "--loop", "asyncio"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        expected = tmp_path / "data" / "chatserver" / "history.db"
        assert f"history in {expected}" in line, line
        assert expected.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(TIMEOUT)
