"""hello: the welcome, default and listed rooms, refusals, the deadline, ghosts."""

from __future__ import annotations

import base64
import time

from chatserver import __version__
from tests.server.support import (
    TS_RE,
    assert_alive,
    assert_closed,
    assert_error,
    assert_room_carries_on,
)


def test_welcome_fields(server, connect):
    alice = connect()
    alice.send({"type": "hello", "name": "alice", "ref": "h1"})
    welcome = alice.expect_next("welcome")
    assert welcome["name"] == "alice"
    assert welcome["proto"] == 1
    assert welcome["ref"] == "h1"
    assert welcome["server"] == f"chatserver/{__version__}"
    assert welcome["rooms"] == ["lobby"]  # the default room
    s = server.settings
    assert welcome["limits"] == {
        "max_frame": s.max_frame,
        "max_text": s.max_text,
        "rate": s.msg_rate,
        "burst": s.msg_burst,
    }
    token = welcome["session"]
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    # Then the room's history and our own join (section 3.1 lists both; the order
    # of the `join` row, join then history, is what the server does).
    join = alice.expect_next("join")
    history = alice.expect_next("history")
    assert history == {"type": "history", "room": "lobby", "messages": [], "more": False}
    assert join["room"] == "lobby" and join["name"] == "alice"
    assert TS_RE.fullmatch(join["ts"])
    assert_alive(alice)


def test_session_tokens_differ(connect):
    a = connect()
    b = connect()
    assert a.hello("a1")["session"] != b.hello("b1")["session"]


def test_higher_proto_gets_ours(connect):
    alice = connect()
    assert alice.hello("alice", proto=2)["proto"] == 1


def test_hello_rooms_each_get_history_then_join(connect):
    bob = connect("bob", rooms=["dev"])
    bob.send({"type": "say", "text": "earlier", "room": "dev"})
    said = bob.expect("msg")
    alice = connect()
    welcome = alice.hello("alice", rooms=["#Dev", "ops", "dev"])
    assert welcome["rooms"] == ["dev", "ops"]  # canonical, duplicates dropped
    events = [alice.recv() for _ in range(4)]
    assert [(e["type"], e["room"]) for e in events] == [
        ("join", "dev"),
        ("history", "dev"),
        ("join", "ops"),
        ("history", "ops"),
    ]
    dev_history = next(e for e in events if e["type"] == "history" and e["room"] == "dev")
    assert [m["id"] for m in dev_history["messages"]] == [said["id"]]
    bob.expect("join", room="dev", name="alice")
    assert_alive(alice)


def test_hello_with_no_rooms(connect):
    alice = connect()
    assert alice.hello("alice", rooms=[])["rooms"] == []
    alice.send({"type": "say", "text": "hi", "ref": 1})
    assert_error(alice, "not_in_room", 1)
    assert_alive(alice)


def test_name_taken_case_insensitive(connect, witnesses):
    bob, carol = witnesses
    mallory = connect()
    mallory.send({"type": "hello", "name": "BOB", "ref": "n"})
    events = assert_closed(mallory, None)
    assert [(e["type"], e["code"], e["ref"]) for e in events] == [("error", "name_taken", "n")]
    assert_room_carries_on(bob, carol)


def test_bad_name(connect, witnesses):
    bob, carol = witnesses
    for name in ("", "has space", "x" * 33, "semi;colon", 42):
        mallory = connect()
        mallory.send({"type": "hello", "name": name})
        events = assert_closed(mallory, None)
        assert [(e["type"], e["code"]) for e in events] == [("error", "bad_name")], name
    assert_room_carries_on(bob, carol)


def test_too_many_rooms_in_hello(make_server, open_client):
    srv = make_server(max_rooms=2, msg_rate=0)
    bob = open_client(srv.port, "bob")
    carol = open_client(srv.port, "carol")
    mallory = open_client(srv.port)
    mallory.send({"type": "hello", "name": "mallory", "rooms": ["a", "b", "c"]})
    events = assert_closed(mallory, None)
    assert [(e["type"], e["code"]) for e in events] == [("error", "too_many_rooms")]
    assert open_client(srv.port).hello("dave", rooms=["a", "b"])["rooms"] == ["a", "b"]
    assert_room_carries_on(bob, carol)


def test_first_message_must_be_hello(connect, witnesses):
    bob, carol = witnesses
    alice = connect()
    alice.send({"type": "say", "text": "hi", "ref": "s1"})
    assert_error(alice, "hello_required", "s1")
    alice.send({"type": "ping", "ref": 2})
    assert_error(alice, "hello_required", 2)
    alice.hello("alice")  # the connection stayed: hello still works
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_hello_twice(connect):
    alice = connect("alice")
    alice.send({"type": "hello", "name": "alice2", "ref": 3})
    assert_error(alice, "bad_message", 3)
    assert_alive(alice)


def test_hello_deadline(make_server, open_client):
    srv = make_server(hello_timeout=0.3, msg_rate=0)
    started = time.monotonic()
    bob = open_client(srv.port, "bob")
    silent = open_client(srv.port)
    partial = open_client(srv.port)
    partial.send_raw(b"12345")  # not even a whole header
    # Closed without a word: no error, no bye.
    assert silent.wait_closed() == []
    assert partial.wait_closed() == []
    assert time.monotonic() - started >= 0.25
    assert_alive(bob)  # who said hello in time stays


def test_ghost_takeover(connect, witnesses):
    bob, carol = witnesses
    ghost = connect()
    welcome = ghost.hello("alice", rooms=["lobby", "dev"])
    bob.expect("join", name="alice")
    new = connect()
    welcome2 = new.hello("ALICE", session=welcome["session"], ref="t")
    assert welcome2["ref"] == "t"
    assert welcome2["session"] != welcome["session"]
    assert sorted(welcome2["rooms"]) == ["dev", "lobby"]
    assert_closed(ghost, "replaced")
    new.send({"type": "say", "text": "back", "room": "lobby"})
    new.expect("msg", text="back")
    bob.expect("msg", text="back")
    # Nobody saw the name leave and come back.
    assert not [e for e in bob.skipped if e["type"] in ("join", "leave")], bob.skipped
    new.send({"type": "who", "room": "dev", "ref": "w"})
    assert new.expect("who", ref="w")["names"] == ["ALICE"]
    assert_alive(new)
    assert_room_carries_on(bob, carol)


def test_ghost_wrong_token(connect, witnesses):
    bob, carol = witnesses
    alice = connect()
    alice.hello("alice")
    thief = connect()
    thief.send({"type": "hello", "name": "alice", "session": "guessed-" + "x" * 32})
    events = assert_closed(thief, None)
    assert [(e["type"], e["code"]) for e in events] == [("error", "name_taken")]
    assert_alive(alice)
    assert_room_carries_on(bob, carol)
