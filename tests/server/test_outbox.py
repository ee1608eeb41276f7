"""The hub's bookkeeping of a turn's output is gone once the turn is."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Client


def test_no_outbox_is_kept_past_its_turn(make_server, tmp_path: Path) -> None:
    # Durable: the hub keeps this turn's outboxes aside for a commit that
    # might fail; with no message to commit, they must still be let go.
    srv = make_server(db=str(tmp_path / "h.db"), msg_rate=0)
    clients = [Client(srv.port) for _ in range(20)]
    for i, c in enumerate(clients):
        c.hello(f"user{i}")
        c.expect("history")
    ref = "barrier"
    clients[0].send({"type": "ping", "ref": ref})
    clients[0].expect("pong", ref=ref)
    assert srv.call(lambda: len(srv.server.hub._held)) == 0
    for c in clients:
        c.close()
