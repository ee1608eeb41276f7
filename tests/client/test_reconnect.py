"""Reconnect: the server process restarts mid-session; the client comes back by itself
and shows what was said while it was away exactly once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from chatserver.config import build_parser
from tests.client.conftest import Lines, spawn_client
from tests.helpers import Client, ProcessServer


def server_args(tmp_path: Path) -> list[str]:
    args = ["--msg-rate", "0"]
    if "--db" in build_parser().format_help():  # persistent history, once the server has it
        args += ["--db", str(tmp_path / "chat.db")]
    return args


def texts(lines: list[str]) -> Counter[str]:
    """Every message text the recorder printed, live or from a history replay."""
    counts: Counter[str] = Counter()
    for line in lines:
        event = json.loads(line)
        if event["type"] == "msg":
            counts[event["text"]] += 1
        elif event["type"] == "history":
            counts.update(m["text"] for m in event["messages"])
    return counts


def test_restarted_server_missed_messages_shown_once(tmp_path: Path) -> None:
    args = server_args(tmp_path)
    server = ProcessServer(*args)
    port = server.port
    recorder = spawn_client(port, "--name", "rec", "--listen", "--json")
    out, err = Lines(recorder.stdout), Lines(recorder.stderr)
    bob = carol = None
    try:
        out.wait('"type": "history"')
        bob = Client(port)
        bob.hello("bob")
        for i in range(3):
            bob.send({"type": "say", "text": f"before {i}"})
        out.wait('"before 2"')

        server.stop()  # killed: the recorder's connection drops
        err.wait("connection lost")
        server = ProcessServer(*args, "--port", str(port))
        carol = Client(port)
        carol.hello("carol")
        for i in range(3):  # most likely before the recorder is back
            carol.send({"type": "say", "text": f"while away {i}"})
        carol.expect("msg", text="while away 2")
        err.wait("reconnected")
        for i in range(3):
            carol.send({"type": "say", "text": f"after {i}"})
        out.wait('"after 2"')
        # Answers come in order: once /who is answered, any resume replay is in.
        recorder.stdin.write("/who\n")
        recorder.stdin.flush()
        out.wait('"type": "who"')

        counts = texts(out.seen)
        for prefix in ("before", "while away", "after"):
            for i in range(3):
                assert counts[f"{prefix} {i}"] == 1, (prefix, i, out.seen)
    finally:
        for client in (bob, carol):
            if client is not None:
                client.close()
        recorder.kill()
        recorder.wait(5)
        server.stop()
