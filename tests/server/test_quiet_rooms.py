"""Quiet rooms (issue 15): past --quiet-room-size a room tells joins and leaves
only to whoever joins or leaves; the list stays right through ``who``, and the
counts come with every join, leave and who. Also the reconnect storm: a few
hundred hellos at once are all let in, in order, while a member chats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatserver.config import parse_args
from tests.helpers import Client, LineClient, ThreadServer


@pytest.fixture
def quiet(make_server: Callable[..., ThreadServer]) -> Callable[..., Client]:
    """Clients of a server whose rooms go quiet past 4 members."""
    server = make_server(msg_rate=0, quiet_room_size=4)
    clients: list[Client] = []

    def connect(name: str) -> Client:
        client = Client(server.port)
        clients.append(client)
        client.hello(name)
        client.expect("join", name=name)
        return client

    yield connect  # type: ignore[misc]
    for client in clients:
        client.close()


def _next_is_msg_of(client: Client, sender: Client, text: str) -> None:
    """What ``client`` gets next is ``sender``'s message: nothing (no notice)
    was sent to it in between (the server handles a client's requests in order)."""
    event = client.recv()
    assert event["type"] == "msg" and event["from"] == sender.name, event
    assert event["text"] == text, event


def _say(client: Client, text: str) -> None:
    client.send({"type": "say", "text": text})


def test_counts_come_with_joins_and_leaves(quiet: Callable[..., Client]) -> None:
    alice = quiet("alice")
    bob = quiet("bob")
    assert alice.expect("join", name="bob")["members"] == 2
    bob.send({"type": "leave", "room": "lobby"})
    assert bob.expect("leave", name="bob")["members"] == 1
    assert alice.expect("leave", name="bob")["members"] == 1


def test_past_the_size_joins_and_leaves_are_told_only_to_their_member(
    quiet: Callable[..., Client],
) -> None:
    a, b, c, d = (quiet(n) for n in ("a", "b", "c", "d"))
    for name in ("b", "c", "d"):
        a.expect("join", name=name)
    # The fifth makes it quiet: the last join everyone is told, flagged so.
    e = quiet("e")
    for member in (a, b, c, d):
        join = member.expect("join", name="e")
        assert join["members"] == 5 and join["quiet"] is True, join
    # The sixth is told of its own join (with the count); nobody else is.
    f = quiet("f")
    _say(f, "hi from f")
    _next_is_msg_of(a, f, "hi from f")
    f.send({"type": "join", "room": "lobby", "ref": "again"})  # already there: answered as one
    again = f.expect("join", name="f")
    assert again["members"] == 6 and again["quiet"] is True, again
    # The list is right on demand.
    a.send({"type": "who", "ref": "w"})
    who = a.expect("who", ref="w")
    assert who["names"] == ["a", "b", "c", "d", "e", "f"]
    assert who["count"] == 6 and who["quiet"] is True, who
    # Leaves too: told to the leaver only.
    f.send({"type": "leave", "room": "lobby"})
    assert f.expect("leave", name="f")["members"] == 5
    e.send({"type": "quit"})
    _say(d, "d still here")
    _next_is_msg_of(a, d, "d still here")


def test_a_quiet_room_down_to_half_its_size_sends_the_list_and_is_loud_again(
    quiet: Callable[..., Client],
) -> None:
    clients = [quiet(n) for n in ("a", "b", "c", "d", "e")]
    a, b = clients[0], clients[1]
    a.expect("join", name="e", quiet=True)
    for leaver in clients[4:1:-1]:  # e, d, c: 4, 3, then 2 members (half of 4)
        leaver.send({"type": "leave", "room": "lobby"})
        leaver.expect("leave", name=leaver.name)
    for member in (a, b):
        who = member.expect("who")  # unasked: the list, now that notices resume
        assert who["names"] == ["a", "b"] and who["count"] == 2 and "quiet" not in who, who
        assert "ref" not in who
    carol = quiet("carol")
    for member in (a, b):
        join = member.expect_next("join")
        assert join["name"] == "carol" and join["members"] == 3 and "quiet" not in join, join
    _say(carol, "back to normal")
    _next_is_msg_of(b, carol, "back to normal")


def test_a_line_client_is_told_the_room_is_quiet(
    make_server: Callable[..., ThreadServer],
) -> None:
    server = make_server(msg_rate=0, quiet_room_size=1)
    alice = Client(server.port)
    alice.hello("alice")
    line = LineClient(server.port)
    try:
        line.send("bob\n")
        line.expect(r"-- bob joined lobby \(2 members: a quiet room, joins and leaves are not")
        line.send("/who\n")
        line.expect(r"-- lobby \(2 members\): alice bob")
    finally:
        line.close()
        alice.close()


def test_a_storm_of_hellos_all_get_in_while_a_member_chats(
    make_server: Callable[..., ThreadServer],
) -> None:
    """More hellos at once than a turn takes (32): each is let in, none timed
    out, and a member in the room keeps getting its messages, in order."""
    server = make_server(msg_rate=0, quiet_room_size=20, hello_timeout=5.0)
    alice = Client(server.port)
    alice.hello("alice")
    alice.expect("join", name="alice")
    storm = [Client(server.port) for _ in range(300)]
    hellos: list[tuple[Client, bytes]] = []
    for i, client in enumerate(storm):
        client.name = f"s{i}"
        payload = b'{"type":"hello","name":"s%d"}' % i
        hellos.append((client, b"%-10d%s" % (len(payload), payload)))
    try:
        for client, frame in hellos:
            client.send_raw(frame)
        for n in range(20):
            alice.send({"type": "say", "text": f"m{n}"})
        welcomes: list[dict[str, Any]] = [client.expect("welcome") for client in storm]
        assert len(welcomes) == 300
        got = [alice.expect("msg")["text"] for _ in range(20)]
        assert got == [f"m{n}" for n in range(20)]
        alice.send({"type": "who", "ref": "w"})
        who = alice.expect("who", ref="w")
        assert who["count"] == 301 and who["quiet"] is True
    finally:
        for client in storm:
            client.close()
        alice.close()


def test_the_flags() -> None:
    assert parse_args(["--backlog", "7"]).replay == 7  # the old name still works
    assert parse_args(["--replay", "3"]).replay == 3
    settings = parse_args([])
    assert settings.replay == 50 and settings.quiet_room_size == 500
    assert settings.listen_backlog == 4096
    assert parse_args(["--listen-backlog", "10000", "--quiet-room-size", "0"]).quiet_room_size == 0
    for bad in (["--listen-backlog", "0"], ["--quiet-room-size", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
