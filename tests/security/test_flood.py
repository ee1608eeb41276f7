"""Connection floods past --max-clients and --max-per-ip against a real process."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from chatserver.protocol import FrameDecoder, encode_frame
from chatserver.server import MAX_REFUSING
from tests.helpers import TIMEOUT, Client, ProcessServer, read_to_eof
from tests.security.conftest import Bystanders
from tests.security.support import outside_address, welcomed

pytestmark = pytest.mark.timeout(60)


def _refused(client: Client) -> None:
    """A refused hello: error server_full, then the server closes."""
    events = client.wait_closed()
    assert [e["type"] for e in events] == ["error"], events
    assert events[0]["code"] == "server_full", events


def test_flood_past_max_clients(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    limit = 20
    server = start_server("--max-clients", str(limit))
    users = bystanders(server.port)
    baseline = users.baseline()

    fillers = [Client(server.port) for _ in range(limit - 2)]
    for i, c in enumerate(fillers):
        c.hello(f"filler{i}")
    flood = [Client(server.port) for _ in range(60)]
    for i, c in enumerate(flood):
        c.send({"type": "hello", "name": f"flood{i}"})
    for c in flood:
        _refused(c)
        c.close()
    users.assert_unhurt(baseline)

    for c in fillers:
        c.close()
    # The count recovers: as many new users as the fillers were are welcomed.
    newcomers = [welcomed(server.port, "127.0.0.1", f"new{i}") for i in range(limit - 2)]
    extra = Client(server.port)
    extra.send({"type": "hello", "name": "onetoomany"})
    _refused(extra)
    users.assert_unhurt(baseline)
    for c in newcomers:
        c.close()


def test_flood_past_max_per_ip(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    addr = outside_address()
    if addr is None:
        pytest.skip("no non-loopback address to connect from")
    per_ip = 5
    server = start_server("--host", "0.0.0.0", "--max-per-ip", str(per_ip))
    users = bystanders(server.port)  # over loopback: exempt, and unaffected
    baseline = users.baseline()

    mine = [Client(server.port, addr) for _ in range(per_ip)]
    for i, c in enumerate(mine):
        c.hello(f"ip{i}")
    flood = [Client(server.port, addr) for _ in range(40)]
    for i, c in enumerate(flood):
        c.send({"type": "hello", "name": f"flood{i}"})
    for c in flood:
        _refused(c)
        c.close()
    users.assert_unhurt(baseline)
    # Loopback is exempt: a further local user is still welcomed.
    local = Client(server.port)
    local.hello("local")

    mine[0].close()
    again = welcomed(server.port, addr, "ip-again")
    one_more = Client(server.port, addr)
    one_more.send({"type": "hello", "name": "one-more"})
    _refused(one_more)
    users.assert_unhurt(baseline)
    for c in (*mine[1:], again, local):
        c.close()


def test_silent_flood_past_max_clients(
    start_server: Callable[..., ProcessServer], bystanders: Callable[[int], Bystanders]
) -> None:
    """Connections that never speak, fifty times --max-clients: each used to get
    a handler (and two log lines) until its hello deadline. Now a few are kept
    to be told server_full once they speak; the rest are closed at once."""
    limit = 20
    server = start_server("--max-clients", str(limit), "--hello-timeout", "30")
    users = bystanders(server.port)
    baseline = users.baseline()
    rss0 = server.rss_kib()
    flood: list[socket.socket] = []
    try:
        for _ in range(1000):
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
        free = limit - 2
        for sock in flood[free + MAX_REFUSING : free + MAX_REFUSING + 20] + flood[-20:]:
            assert read_to_eof(sock) == b""
        # One waiting to be refused speaks: it is told why, in its own framing.
        waiting = flood[free + 3]
        waiting.sendall(encode_frame(b'{"type": "hello", "name": "late"}'))
        decoder = FrameDecoder(1 << 16)
        events = [json.loads(p) for p in decoder.feed(read_to_eof(waiting))]
        assert [(e["type"], e["code"]) for e in events] == [("error", "server_full")], events
        assert server.rss_kib() - rss0 < 16 * 1024, (server.rss_kib(), rss0)
        users.assert_unhurt(baseline)
        refusals = [line for line in list(server.log) if "refused" in line or "at once" in line]
        assert len(refusals) <= 4, refusals
    finally:
        for sock in flood:
            sock.close()
    newcomers = [welcomed(server.port, "127.0.0.1", f"new{i}") for i in range(limit - 2)]
    extra = Client(server.port)
    extra.send({"type": "hello", "name": "onetoomany"})
    _refused(extra)
    users.assert_unhurt(baseline)
    for c in (*newcomers, extra):
        c.close()
