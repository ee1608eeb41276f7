"""The real client (``chatclient --server A --server B``) on a real cluster: its
server is killed, it moves to the other by itself and resumes there, with
nothing missed and nothing shown twice."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.client.conftest import Lines, spawn_client
from tests.cluster.support import CountingClient, Node

pytestmark = pytest.mark.timeout(60)


def test_the_client_resumes_on_another_process_missing_nothing_showing_nothing_twice(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2)
    rec = spawn_client(
        None, "--name", "rec", "--listen", "--json",
        "--server", f"127.0.0.1:{a.port}", "--server", f"127.0.0.1:{b.port}",
    )  # fmt: skip
    out, err = Lines(rec.stdout), Lines(rec.stderr)
    try:
        out.wait('"type": "history"')  # welcomed on a, in lobby
        bob = counting(b.port, "bob")
        before = [bob.say(f"before {i}") for i in range(20)]
        out.wait(f'"before {19}"')

        a.kill()  # no bye: the connection just drops
        during = [bob.say(f"while it moves {i}") for i in range(50)]
        assert "node n2" in err.wait("reconnected", timeout=20)
        after = [bob.say(f"after {i}") for i in range(20)]
        out.wait('"after 19"')

        events = [json.loads(line) for line in out.seen]
        welcomes = [e for e in events if e["type"] == "welcome"]
        assert [w["node"] for w in welcomes] == ["n1", "n2"]
        assert welcomes[1]["name"] == "rec"  # its session took the name over
        shown = [e["id"] for e in events if e["type"] == "msg"]
        shown += [m["id"] for e in events if e["type"] == "history" for m in e["messages"]]
        sent = before + during + after
        assert sorted(shown) == sent, "missed or shown twice"
        # And bob never saw rec leave: it came back on its token in time.
        assert not [e for e in bob.events if e["type"] == "leave"]
    finally:
        rec.kill()
        rec.wait(5)
