"""Rate limiting, connection limits, fan-out order and slow consumers."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time

import pytest

from chatserver.protocol import FrameDecoder, encode_frame
from tests.helpers import TIMEOUT, Client
from tests.server.support import (
    assert_alive,
    assert_closed,
    assert_error,
    assert_room_carries_on,
)


def test_rate_limit_delays_but_drops_nothing(make_server, open_client):
    srv = make_server(msg_rate=50, msg_burst=5)
    bob = open_client(srv.port, "bob")
    alice = open_client(srv.port, "alice")
    alice.expect("join", name="alice")
    burst = b"".join(
        encode_frame(json.dumps({"type": "say", "text": f"m{i}"}).encode()) for i in range(30)
    )
    started = time.monotonic()
    alice.send_raw(burst)
    texts = [alice.expect("msg")["text"] for _ in range(30)]
    elapsed = time.monotonic() - started
    assert texts == [f"m{i}" for i in range(30)]
    # 5 go at once, the other 25 at 50/s: about 0.5 s.
    assert elapsed >= 0.4, elapsed
    assert [bob.expect("msg")["text"] for _ in range(30)] == texts
    assert_alive(alice)


def test_rate_limit_off(make_server, open_client):
    srv = make_server(msg_rate=0, msg_burst=1)
    alice = open_client(srv.port, "alice")
    started = time.monotonic()
    alice.send_raw(b"".join(encode_frame(b'{"type":"ping"}') for _ in range(200)))
    for _ in range(200):
        alice.expect("pong")
    assert time.monotonic() - started < 2


def test_max_clients(make_server, open_client):
    srv = make_server(max_clients=3, msg_rate=0)
    bob, carol = open_client(srv.port, "bob"), open_client(srv.port, "carol")
    bob.expect("join", name="carol")
    alice = open_client(srv.port, "alice")
    extra = open_client(srv.port)
    extra.send({"type": "hello", "name": "extra", "ref": 1})
    events = assert_closed(extra, None)
    assert [(e["type"], e["code"]) for e in events] == [("error", "server_full")]
    line = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    line.sendall(b"netcat\n")
    data = b""
    while chunk := line.recv(4096):
        data += chunk
    line.close()
    assert b"!! server_full" in data and data.endswith(b"\n")
    # A place frees up when someone leaves.
    alice.send({"type": "quit"})
    bob.expect("leave", name="alice")
    assert open_client(srv.port).hello("dave")["name"] == "dave"
    assert_room_carries_on(bob, carol)


def test_three_senders_five_receivers(connect):
    receivers = [connect(f"recv{i}") for i in range(5)]
    senders = [connect(f"send{i}") for i in range(3)]
    receivers[0].expect("join", name="send2")
    for n in range(100):  # interleaved, as concurrent clients would be
        for s, sender in enumerate(senders):
            sender.send({"type": "say", "text": f"{s}:{n}"})
    seen = []
    for client in receivers + senders:
        msgs = [client.expect("msg") for _ in range(300)]
        seen.append([(m["id"], m["from"], m["text"]) for m in msgs])
        ids = [m["id"] for m in msgs]
        assert all(a < b for a, b in itertools.pairwise(ids)), "ids not increasing"
        for s in range(3):
            mine = [m["text"] for m in msgs if m["from"] == f"send{s}"]
            assert mine == [f"{s}:{n}" for n in range(100)]
    assert all(got == seen[0] for got in seen), "members saw different orders"
    for client in receivers + senders:
        assert_alive(client)  # and nothing more arrived before the pong
        assert not [e for e in client.skipped if e["type"] == "msg"]


def _drain(sock: socket.socket, stop: threading.Event) -> None:
    """Read and discard, so that a sender never becomes a slow consumer itself."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 20):
                return
        except TimeoutError:
            continue


def _count_msgs(client: Client, want: int, out: dict) -> None:
    """Read every event; stop after ``want`` msgs of the flow and one other event.

    (The slow one's leave may come after the flow's last message: with durable
    history, output goes out in batches as commits finish.)
    """
    ids: list[int] = []
    others: list[dict] = []
    try:
        while len(ids) < want or not others:
            event = client.recv()
            if event["type"] == "msg" and event["from"] == "sender":
                ids.append(event["id"])
            else:
                others.append(event)
    finally:
        out["ids"] = ids
        out["others"] = others


def test_slow_consumer(make_server, open_client):
    # Room to read the last bytes after the flow (the default linger in tests is 2 s).
    # (name_grace 0: the others are told of the leave at once, not after a grace.)
    srv = make_server(msg_rate=0, close_linger=15, name_grace=0)
    sender = open_client(srv.port, "sender")
    reader = open_client(srv.port, "reader")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # kernel buffering stays small
    slow.connect(("127.0.0.1", srv.port))
    slow.sendall(encode_frame(b'{"type": "hello", "name": "slow"}'))
    reader.expect("join", name="slow")
    sender.expect("join", name="slow")

    stop = threading.Event()
    drainer = threading.Thread(target=_drain, args=(sender.sock, stop), daemon=True)
    drainer.start()
    text = "x" * 4000
    frame = encode_frame(json.dumps({"type": "say", "text": text}).encode())
    count = 10_000_000 // len(frame) + 1
    result: dict = {}
    counter = threading.Thread(target=_count_msgs, args=(reader, count, result), daemon=True)
    counter.start()
    try:
        for _ in range(count // 100):
            sender.send_raw(frame * 100)
        sender.send_raw(frame * (count % 100))
        counter.join(30)
    finally:
        stop.set()
        drainer.join(TIMEOUT)
    assert len(result["ids"]) == count, "the reading client lost messages"
    assert result["ids"] == sorted(set(result["ids"]))
    assert [(e["type"], e["name"], e["reason"]) for e in result["others"]] == [
        ("leave", "slow", "slow consumer")
    ]
    assert count * len(frame) >= 10_000_000

    # The slow one: whatever was queued, then `bye slow_consumer` at the end, then EOF.
    decoder = FrameDecoder(max_frame=1 << 20)
    slow.settimeout(TIMEOUT)
    events = []
    while data := slow.recv(1 << 20):
        events.extend(json.loads(p) for p in decoder.feed(data))
    slow.close()
    assert events[-1] == {"type": "bye", "reason": "slow_consumer"}
    got = sum(1 for e in events if e["type"] == "msg")
    assert got < count, "the slow client was never cut"

    assert_alive(reader)


def test_error_in_one_room_does_not_touch_another(connect):
    alice = connect("alice", rooms=["a"])
    bob, carol = connect("bob", rooms=["a"]), connect("carol", rooms=["a"])
    alice.send({"type": "dm", "to": "ghost", "text": "x", "ref": 1})
    assert_error(alice, "no_such_user", 1)
    assert_room_carries_on(bob, carol, room="a")


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only, UDP connect sends nothing
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_max_per_ip_exempts_loopback(make_server, open_client):
    srv = make_server(max_per_ip=1, msg_rate=0)
    a, b = open_client(srv.port, "a"), open_client(srv.port, "b")
    assert_alive(a)
    assert_alive(b)


def test_max_per_ip(make_server):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address to connect from")
    srv = make_server(host=address, max_per_ip=2, msg_rate=0)
    clients = [Client(srv.port, host=address) for _ in range(3)]
    try:
        clients[0].hello("a")
        clients[1].hello("b")
        clients[2].send({"type": "hello", "name": "c"})
        events = assert_closed(clients[2], None)
        assert [(e["type"], e["code"]) for e in events] == [("error", "server_full")]
        assert_alive(clients[0])
    finally:
        for client in clients:
            client.close()
