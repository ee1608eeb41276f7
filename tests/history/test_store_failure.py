"""A history store that cannot be written: nothing anyone saw is lost.

The disk "fills up" for real: the server process's RLIMIT_FSIZE is lowered
to one byte while it runs (prlimit), so every write to its files fails
with EFBIG, as on a full disk (Python ignores SIGXFSZ). Then it is lifted.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TIMEOUT, Client, LineClient, ProcessServer
from tests.history.support import full_history, joined

pytestmark = pytest.mark.timeout(60)


def _say(client: Client, text: str) -> dict[str, Any]:
    """Say text; return the answer to it: its echo, or the error with its ref."""
    client.send({"type": "say", "text": text, "ref": text})
    while True:
        event = client.recv()
        if event.get("ref") == text:
            return event


def _barrier(client: Client, ref: str) -> list[dict[str, Any]]:
    """Every event the client was sent before the pong to this ping."""
    client.send({"type": "ping", "ref": ref})
    client.expect("pong", ref=ref)
    return client.skipped


@pytest.mark.parametrize("mode", [(), ("--fsync",)], ids=["loop-commits", "fsync-writer-thread"])
def test_a_full_disk_loses_nothing_anyone_saw(tmp_path: Path, mode: tuple[str, ...]) -> None:
    db = tmp_path / "history.db"
    server = ProcessServer("--db", str(db), "--msg-rate", "0", *mode)
    pid = server.proc.pid
    try:
        alice = joined(server.port, "alice")
        bob = joined(server.port, "bob")
        alice.expect("join", name="bob")
        carol = LineClient(server.port)  # a line client: its copies are text, not JSON
        carol.send("carol\n")
        alice.expect("join", name="carol")
        seen = []
        for i in range(20):
            echo = _say(alice, f"ok {i}")
            assert echo["type"] == "msg"
            assert bob.expect("msg", text=f"ok {i}")["id"] == echo["id"]
            seen.append(echo["text"])

        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        refused = [_say(alice, f"lost {i}") for i in range(5)]
        assert [(e["type"], e["code"]) for e in refused] == [("error", "unavailable")] * 5
        server.wait_log(r"ERROR history: cannot write .*unavailable")
        # A sender without a ref is answered too, in its echo's place.
        bob.send({"type": "say", "text": "lost without a ref"})
        error = bob.expect("error")
        assert error["code"] == "unavailable" and "ref" not in error
        # Nothing of them reached anyone; everyone is still connected and chatting.
        assert not [e for e in _barrier(bob, "b1") if e["type"] == "msg"]
        carol.send("/who\n")
        who = carol.expect(r"-- lobby: ")
        assert "lost" not in "".join(carol.seen) + who
        assert not [e for e in _barrier(alice, "a1") if e["type"] in ("msg", "bye")]
        alice.send({"type": "dm", "to": "bob", "text": "direct messages are not stored"})
        assert bob.expect("dm")["text"] == "direct messages are not stored"

        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        # Accepted again within the retry bound (a few seconds), refused until then.
        deadline = time.monotonic() + TIMEOUT
        attempt = 0
        while True:
            answer = _say(alice, f"back {attempt}")
            if answer["type"] == "msg":
                break
            assert answer["code"] == "unavailable", answer
            assert time.monotonic() < deadline, "writes did not resume"
            attempt += 1
            # Wait for the retry without sleeping: a round trip paces the next try.
            _barrier(alice, f"pace {attempt}")
        assert bob.expect("msg", text=f"back {attempt}")["id"] == answer["id"]
        carol.expect(rf"<alice> back {attempt}$")
        seen.append(answer["text"])
        server.wait_log(r"history: writing again after")
        # Said once, then at a bounded rate (not a line per failed commit).
        errors = [line for line in server.log if " ERROR " in line]
        assert 1 <= len(errors) <= 2, errors
    finally:
        server.stop()  # kill -9

    again = ProcessServer("--db", str(db))
    try:
        assert [m["text"] for m in full_history(again.port)] == seen
    finally:
        again.stop()
