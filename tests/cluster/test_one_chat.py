"""Several processes, one chat: everything a client sees holds across them
(PROTOCOL 9.5), each counted at every client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from chatserver.protocol import encode_frame
from tests.cluster.support import CountingClient, Node, assert_each_got
from tests.helpers import Client

pytestmark = pytest.mark.timeout(60)


def test_rooms_dms_who_rooms_nick_history_across_processes(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2)
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    assert alice.welcome["node"] == "n1" and bob.welcome["node"] == "n2"
    alice.expect("join", name="bob", room="lobby")

    ids = [alice.say("from a"), bob.say("from b"), alice.say("from a again")]
    assert ids == sorted(ids)
    assert_each_got([alice, bob], "lobby", ids)

    bob.send({"type": "dm", "to": "ALICE", "text": "psst", "ref": "d"})
    echo = bob.expect("dm", ref="d")
    got = alice.expect("dm", text="psst")
    assert got["id"] == echo["id"] and got["from"] == "bob" and got["to"] == "alice"
    bob.send({"type": "dm", "to": "nobody", "text": "?", "ref": "n"})
    assert bob.expect("error", ref="n")["code"] == "no_such_user"

    bob.send({"type": "who", "ref": "w"})
    assert bob.expect("who", ref="w")["names"] == ["alice", "bob"]
    bob.send({"type": "join", "room": "side", "ref": "j"})
    bob.expect("join", room="side", name="bob")
    # n1 learns of bob's join when it reads it from the log, a moment after n2
    # answered bob: ask until it has (one process's view of another is eventual).
    deadline = time.monotonic() + 5
    while True:
        alice.send({"type": "rooms", "ref": "r"})
        rooms = alice.expect("rooms", ref="r")["rooms"]
        if len(rooms) == 2 or time.monotonic() > deadline:
            break
    assert rooms == [{"name": "lobby", "members": 2}, {"name": "side", "members": 1}]

    bob.send({"type": "nick", "name": "robert"})
    assert alice.expect("nick")["new"] == "robert"
    assert bob.expect("nick")["old"] == "bob"
    bob.send({"type": "leave", "room": "side"})
    bob.expect("leave", room="side", name="robert")

    # History and paging, asked of the other process than the sender's.
    more = [alice.say(f"page {i}") for i in range(30)]
    assert_each_got([bob], "lobby", ids + more)
    bob.send({"type": "history", "room": "lobby", "limit": 10, "ref": "h1"})
    page = bob.expect("history", ref="h1")
    assert [m["id"] for m in page["messages"]] == more[-10:] and page["more"]
    bob.send({"type": "history", "room": "lobby", "before": more[-10], "limit": 100, "ref": "h2"})
    older = bob.expect("history", ref="h2")
    assert [m["id"] for m in older["messages"]] == ids + more[:-10]

    alice.send({"type": "quit", "reason": "bye now"})
    leave = bob.expect("leave", name="alice")
    assert leave["reason"] == "bye now"


def test_a_name_is_held_once_across_processes_1000_races(
    cluster: Callable[..., list[Node]],
) -> None:
    """Two clients on two processes say hello with the same name at once:
    exactly one is welcomed, the other told name_taken, 1 000 times."""
    a, b = cluster(2)
    results: list[tuple[str, str]] = []
    for i in range(1000):
        clients = [Client(a.port), Client(b.port)]
        frame = encode_frame(b'{"type":"hello","name":"racer%d"}' % i)
        barrier = threading.Barrier(2)

        def send(c: Client, frame: bytes = frame, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            c.send_raw(frame)

        threads = [threading.Thread(target=send, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers = [c.recv() for c in clients]
        kinds = (answers[0]["type"], answers[1]["type"])
        results.append(kinds)
        for c, answer in zip(clients, answers, strict=True):
            if answer["type"] == "error":
                assert answer["code"] == "name_taken", answer
            else:
                c.send({"type": "quit"})  # the name is free again for the next race
                c.expect("bye")
            c.close()
    won = [r for r in results if sorted(r) == ["error", "welcome"]]
    assert len(won) == 1000, [r for r in results if sorted(r) != ["error", "welcome"]][:5]
    # Both processes won some: the race was real.
    assert {r.index("welcome") for r in won} == {0, 1}


def test_one_order_every_client_gets_every_message_once_in_id_order(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    """Four senders on two processes write into one room at once; every member,
    on either process, gets each message once, in id order."""
    a, b = cluster(2)
    clients = [counting((a, b)[i % 2].port, f"u{i}") for i in range(6)]
    refs: dict[CountingClient, list[str]] = {c: [] for c in clients[:4]}
    for n in range(200):
        for c in clients[:4]:
            refs[c].append(c.send_say(f"{c.name} {n}"))
    sent: list[int] = []
    for c, rs in refs.items():
        sent += c.wait_echoes(rs, timeout=30)
    assert len(set(sent)) == 800
    assert_each_got(clients, "lobby", sent, timeout=30)


def test_a_quiet_room_is_quiet_on_every_process(cluster: Callable[..., list[Node]]) -> None:
    """The room's size counts the members of every process: each process
    stops telling joins at the same join, and ``who`` lists them all."""
    a, b = cluster(2, "--quiet-room-size", "2")
    clients: list[Client] = []

    def join(port: int, name: str) -> Client:
        client = Client(port)
        clients.append(client)
        client.hello(name)
        return client

    try:
        alice = join(a.port, "alice")
        bob = join(b.port, "bob")
        alice.expect("join", name="bob", members=2)
        carol = join(b.port, "carol")  # the third: the room goes quiet
        for member in (alice, bob):
            assert member.expect("join", name="carol")["quiet"] is True
        dave = join(a.port, "dave")
        assert dave.expect("join", name="dave")["members"] == 4
        carol.send({"type": "say", "text": "after dave"})
        for member in (alice, bob):
            event = member.recv()  # no join of dave came first, on either process
            assert event["type"] == "msg" and event["text"] == "after dave", event
        bob.send({"type": "who", "ref": "w"})
        who = bob.expect("who", ref="w")
        assert who["names"] == ["alice", "bob", "carol", "dave"] and who["quiet"] is True
    finally:
        for client in clients:
            client.close()
