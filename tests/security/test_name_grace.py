"""A dropped user's name is kept for her session token (issue: a client took
a dropped user's name 4.7 ms after the drop, and a DM meant for her went to
the impostor)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest

from tests.helpers import Client, LineClient, ProcessServer
from tests.server.support import assert_closed

pytestmark = pytest.mark.timeout(60)


def _drop(client: Client) -> None:
    """Lose the connection the unclean way: a reset, no quit."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()


def test_the_name_waits_for_its_owner(start_server: Callable[..., ProcessServer]) -> None:
    server = start_server("--msg-rate", "0")
    alice = Client(server.port)
    session = alice.hello("alice")["session"]
    bob = Client(server.port)
    bob.hello("bob")
    carol = LineClient(server.port)
    carol.send("carol\n")
    carol.expect(r"carol joined lobby")

    _drop(alice)
    carol.expect(r"-- alice is away \(connection lost\)")
    # The impostor is refused, by hello and by nick, for as long as it tries.
    mallory = Client(server.port)
    mallory.send({"type": "hello", "name": "alice", "ref": "h"})
    events = assert_closed(mallory, None)
    assert [(e["type"], e["code"]) for e in events] == [("error", "name_taken")]
    assert "kept for its owner" in events[0]["message"]
    mallory = Client(server.port)
    mallory.hello("mallory")
    mallory.send({"type": "nick", "name": "ALICE", "ref": "n"})
    assert mallory.expect("error", ref="n")["code"] == "name_taken"

    # Still a member (away), and a DM to her waits for her.
    bob.send({"type": "who", "ref": "w"})
    who = bob.expect("who", ref="w")
    assert "alice" in who["names"] and who["away"] == {"alice": "connection lost"}
    bob.send({"type": "dm", "to": "alice", "text": "are you there?", "ref": "d"})
    assert bob.expect("dm", ref="d")["to"] == "alice"
    bob.send({"type": "say", "text": "said while she was away"})
    said = bob.expect("msg", text="said while she was away")

    back = Client(server.port)
    welcome = back.hello("alice", session=session, since={"lobby": said["id"] - 1})
    assert welcome["name"] == "alice"
    assert back.expect_next("dm")["text"] == "are you there?"  # right after welcome
    assert [m["text"] for m in back.expect("history")["messages"]] == [said["text"]]
    carol.expect(r"-- alice is back")
    bob.send({"type": "say", "text": "welcome back", "ref": "wb"})
    bob.expect("msg", ref="wb")
    assert not [e for e in bob.skipped if e["type"] in ("join", "leave")], bob.skipped
    assert back.expect("msg")["text"] == "welcome back"
    assert not [e for e in mallory.skipped if e["type"] == "dm"]


def test_the_name_is_freed_once_the_grace_is_over(
    start_server: Callable[..., ProcessServer],
) -> None:
    server = start_server("--msg-rate", "0", "--name-grace", "0.5")
    alice = Client(server.port)
    alice.hello("alice")
    bob = Client(server.port)
    bob.hello("bob")
    bob.expect("join", name="bob")
    _drop(alice)
    leave = bob.expect("leave", name="alice")
    assert leave["reason"] == "connection lost"
    assert Client(server.port).hello("alice")["name"] == "alice"
    bob.send({"type": "ping", "ref": "p"})
    bob.expect("pong", ref="p")
    assert not [e for e in bob.skipped if e["type"] == "leave"], "one leave, not two"


def test_a_line_client_has_no_token_and_no_grace(
    start_server: Callable[..., ProcessServer],
) -> None:
    server = start_server("--msg-rate", "0")
    bob = Client(server.port)
    bob.hello("bob")
    dave = LineClient(server.port)
    dave.send("dave\n")
    bob.expect("join", name="dave")
    dave.close()
    assert bob.expect("leave", name="dave")["reason"] == "disconnected"
    assert Client(server.port).hello("dave")["name"] == "dave"
