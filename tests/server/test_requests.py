"""Every row of the contract's tables (sections 3.1 and 3.2) over a real socket."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.helpers import LineClient
from tests.server.support import (
    TS_RE,
    assert_alive,
    assert_closed,
    assert_error,
    assert_room_carries_on,
)


def _joined(*clients):
    """Drain the join/history events a hello or join leaves queued."""
    for client in clients:
        client.expect("join", name=client.name)


# ---------------------------------------------------------------------------
# say


def test_say_reaches_everyone_sender_included(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.expect("join", name="bob")
    alice.send({"type": "say", "text": "hello", "ref": "r1"})
    echo = alice.expect("msg")
    got = bob.expect("msg")
    assert echo == {**got, "ref": "r1"}
    assert set(got) == {"type", "id", "ts", "room", "from", "text"}
    assert got["room"] == "lobby" and got["from"] == "alice" and got["text"] == "hello"
    assert isinstance(got["id"], int) and got["id"] > 0
    assert TS_RE.fullmatch(got["ts"])
    stamp = datetime.strptime(got["ts"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert stamp.tzinfo == UTC and abs(stamp.timestamp() - time.time()) < 5


def test_say_integer_ref_and_no_ref(connect):
    alice = connect("alice")
    alice.send({"type": "say", "text": "a", "ref": 12345})
    assert alice.expect("msg")["ref"] == 12345
    alice.send({"type": "say", "text": "b"})
    assert "ref" not in alice.expect("msg")


def test_say_room_omitted_is_most_recently_joined(connect):
    alice, bob = connect("alice"), connect("bob", rooms=["dev"])
    alice.send({"type": "join", "room": "dev"})
    alice.expect("history", room="dev")
    alice.send({"type": "say", "text": "to dev"})
    assert alice.expect("msg")["room"] == "dev"
    bob.expect("msg", text="to dev")
    alice.send({"type": "join", "room": "lobby"})  # joined again: current again
    alice.expect("history", room="lobby")
    alice.send({"type": "say", "text": "to lobby"})
    assert alice.expect("msg")["room"] == "lobby"


def test_say_not_in_room(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send({"type": "say", "text": "x", "room": "elsewhere", "ref": "n"})
    assert_error(alice, "not_in_room", "n")
    alice.send({"type": "leave", "room": "lobby"})
    alice.expect("leave", name="alice")
    alice.send({"type": "say", "text": "x", "ref": "m"})
    assert_error(alice, "not_in_room", "m")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_ids_strictly_increasing_across_rooms_and_dms(connect):
    alice, _bob = connect("alice", rooms=["a", "b"]), connect("bob")
    ids = []
    for i in range(30):
        if i % 3 == 2:
            alice.send({"type": "dm", "to": "bob", "text": str(i)})
            ids.append(alice.expect("dm", text=str(i))["id"])
        else:
            alice.send({"type": "say", "text": str(i), "room": "ab"[i % 3]})
            ids.append(alice.expect("msg", text=str(i))["id"])
    assert ids == sorted(set(ids)) and ids[0] > 0


# ---------------------------------------------------------------------------
# dm


def test_dm_and_echo(connect):
    alice, bob = connect("alice"), connect("Bob", rooms=[])
    alice.send({"type": "dm", "to": "bOB", "text": "psst", "ref": "d1"})
    echo = alice.expect("dm")
    got = bob.expect("dm")
    assert echo == {**got, "ref": "d1"}
    assert got["from"] == "alice" and got["to"] == "Bob" and got["text"] == "psst"
    assert TS_RE.fullmatch(got["ts"]) and got["id"] > 0
    assert "ref" not in got


def test_dm_no_such_user(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send({"type": "dm", "to": "nobody", "text": "hi", "ref": 9})
    assert_error(alice, "no_such_user", 9)
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_dm_to_self(connect):
    alice = connect("alice")
    alice.send({"type": "dm", "to": "alice", "text": "note", "ref": 1})
    assert alice.expect("dm")["ref"] == 1
    assert_alive(alice)  # exactly one copy: the next thing is the pong
    assert not [e for e in alice.skipped if e["type"] == "dm"]


# ---------------------------------------------------------------------------
# join / leave


def test_join_creates_room_broadcasts_and_sends_history(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.expect("join", name="bob")
    alice.send({"type": "join", "room": "#New", "ref": "j"})
    join = alice.expect_next("join")
    assert join["room"] == "new" and join["name"] == "alice" and TS_RE.fullmatch(join["ts"])
    history = alice.expect_next("history")
    assert history == {"type": "history", "room": "new", "messages": [], "more": False, "ref": "j"}
    alice.send({"type": "say", "text": "first", "room": "new"})
    first = alice.expect("msg")
    bob.send({"type": "join", "room": "new"})
    bob.expect("join", room="new", name="bob")
    assert [m["id"] for m in bob.expect("history", room="new")["messages"]] == [first["id"]]
    alice.expect("join", room="new", name="bob")  # members are told


def test_join_history_is_the_newest_backlog(connect):
    alice = connect("alice", rooms=["busy"])
    for i in range(60):
        alice.send({"type": "say", "text": str(i)})
    assert alice.expect("msg", text="59")
    bob = connect()
    bob.hello("bob", rooms=["busy"])
    history = bob.expect("history", room="busy")
    assert [m["text"] for m in history["messages"]] == [str(i) for i in range(10, 60)]
    assert history["more"] is True


def test_join_too_many_rooms(make_server, open_client):
    srv = make_server(max_rooms=2, msg_rate=0)
    bob, carol = open_client(srv.port, "bob"), open_client(srv.port, "carol")
    alice = open_client(srv.port, "alice")
    alice.send({"type": "join", "room": "second"})
    alice.expect("history", room="second")
    alice.send({"type": "join", "room": "third", "ref": "t"})
    assert_error(alice, "too_many_rooms", "t")
    alice.send({"type": "join", "room": "second"})  # already in: not a new room
    alice.expect("history", room="second")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_join_bad_room(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send({"type": "join", "room": "no spaces", "ref": "b"})
    assert_error(alice, "bad_room", "b")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_leave_tells_remaining_and_leaver_and_empty_room_goes(connect):
    alice, bob = connect("alice", rooms=["dev", "lobby"]), connect("bob", rooms=["dev"])
    _joined(alice, bob)
    alice.send({"type": "rooms", "ref": 1})
    assert {"name": "dev", "members": 2} in alice.expect("rooms")["rooms"]
    alice.send({"type": "leave", "room": "dev", "reason": "lunch"})
    for who in (alice, bob):
        leave = who.expect("leave", room="dev")
        assert leave["name"] == "alice" and leave["reason"] == "lunch"
        assert TS_RE.fullmatch(leave["ts"])
    bob.send({"type": "leave", "room": "dev"})
    assert bob.expect("leave", room="dev")["name"] == "bob"
    alice.send({"type": "rooms", "ref": 2})
    assert [r["name"] for r in alice.expect("rooms", ref=2)["rooms"]] == ["lobby"]


def test_leave_not_in_room(connect):
    alice = connect("alice")
    alice.send({"type": "leave", "room": "nowhere", "ref": "l"})
    assert_error(alice, "not_in_room", "l")
    assert_alive(alice)


# ---------------------------------------------------------------------------
# nick


def test_nick_to_everyone_sharing_a_room_once_each(connect):
    alice = connect("alice", rooms=["a", "b"])
    bob = connect("bob", rooms=["a", "b"])  # shares two rooms: told once
    carol = connect("carol", rooms=["b"])
    dave = connect("dave", rooms=["elsewhere"])  # shares nothing: not told
    alice.send({"type": "nick", "name": "alicia"})
    for who in (alice, bob, carol):
        nick = who.expect("nick")
        assert nick["old"] == "alice" and nick["new"] == "alicia" and TS_RE.fullmatch(nick["ts"])
    for who in (alice, bob, carol, dave):
        assert_alive(who)
        assert not [e for e in who.skipped if e["type"] == "nick"], who.skipped
    # The new name is the one in use; the old one is free.
    alice.send({"type": "say", "text": "hi", "room": "b"})
    assert carol.expect("msg", text="hi")["from"] == "alicia"
    assert connect().hello("alice")["name"] == "alice"


def test_nick_taken_and_bad(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    alice.send({"type": "nick", "name": "CAROL", "ref": "t"})
    assert_error(alice, "name_taken", "t")
    alice.send({"type": "nick", "name": "no way", "ref": "b"})
    assert_error(alice, "bad_name", "b")
    assert_alive(alice)
    assert_room_carries_on(bob, carol)


def test_nick_change_of_case(connect):
    alice = connect("alice")
    alice.send({"type": "nick", "name": "Alice"})
    assert alice.expect("nick")["new"] == "Alice"


# ---------------------------------------------------------------------------
# who / rooms / history


def test_who_sorted(connect):
    names = ["mike", "Alice", "bob", "Zed", "carol"]
    clients = [connect(n) for n in names]
    clients[0].send({"type": "who", "ref": "w"})
    who = clients[0].expect("who")
    # Sorted case-insensitively (the contract says "sorted"; this is what people expect).
    assert who == {
        "type": "who",
        "room": "lobby",
        "names": sorted(names, key=str.casefold),
        "ref": "w",
        "count": 5,
    }
    clients[1].send({"type": "who", "room": "#LOBBY"})
    assert clients[1].expect("who")["names"] == sorted(names, key=str.casefold)


def test_who_no_such_room(connect):
    alice = connect("alice")
    alice.send({"type": "who", "room": "ghosttown", "ref": 1})
    assert_error(alice, "no_such_room", 1)
    assert_alive(alice)


def test_rooms_member_counts(connect):
    connect("a", rooms=["x", "y"])
    connect("b", rooms=["y"])
    c = connect("c", rooms=["y", "z"])
    c.send({"type": "rooms", "ref": "r"})
    reply = c.expect("rooms")
    assert reply == {
        "type": "rooms",
        "rooms": [
            {"name": "x", "members": 1},
            {"name": "y", "members": 3},
            {"name": "z", "members": 1},
        ],
        "more": False,
        "ref": "r",
    }


def test_history_paging(connect):
    alice = connect("alice", rooms=["log"])
    ids = []
    for i in range(25):
        alice.send({"type": "say", "text": f"m{i}"})
        ids.append(alice.expect("msg", text=f"m{i}")["id"])
    alice.send({"type": "history", "room": "log", "limit": 10, "ref": "p1"})
    page = alice.expect("history", ref="p1")
    assert [m["id"] for m in page["messages"]] == ids[15:] and page["more"] is True
    assert page["room"] == "log"
    msg = page["messages"][0]
    assert set(msg) >= {"id", "ts", "room", "from", "text"} and msg["from"] == "alice"
    alice.send({"type": "history", "room": "log", "limit": 10, "before": ids[15], "ref": "p2"})
    page = alice.expect("history", ref="p2")
    assert [m["id"] for m in page["messages"]] == ids[5:15] and page["more"] is True
    alice.send({"type": "history", "room": "log", "limit": 10, "before": ids[5], "ref": "p3"})
    page = alice.expect("history", ref="p3")
    assert [m["id"] for m in page["messages"]] == ids[:5] and page["more"] is False
    alice.send({"type": "history", "ref": "p4"})  # room omitted: the current one; limit 50
    page = alice.expect("history", ref="p4")
    assert [m["id"] for m in page["messages"]] == ids and page["more"] is False
    alice.send({"type": "history", "room": "empty", "ref": "p5"})  # members only
    assert_error(alice, "not_in_room", "p5")
    alice.send({"type": "join", "room": "empty"})
    alice.expect("history", room="empty")
    alice.send({"type": "history", "room": "empty", "ref": "p6"})
    assert alice.expect("history", ref="p6")["messages"] == []


def test_history_limit_bounds(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice")
    for limit in (0, 501, -1, "5", 2.5):
        alice.send({"type": "history", "room": "lobby", "limit": limit, "ref": str(limit)})
        assert_error(alice, "bad_message", str(limit))
    alice.send({"type": "history", "room": "lobby", "limit": 500, "ref": "ok"})
    alice.expect("history", ref="ok")
    alice.send({"type": "history", "room": "lobby", "limit": 1, "ref": "ok1"})
    alice.expect("history", ref="ok1")
    assert_room_carries_on(bob, carol)


# ---------------------------------------------------------------------------
# ping / quit


def test_ping_pong(connect):
    alice = connect("alice")
    alice.send({"type": "ping", "ref": {"bad": "ref"}})
    assert_error(alice, "bad_message", None)  # an invalid ref cannot be copied
    alice.send({"type": "ping", "ref": 7})
    pong = alice.expect("pong")
    assert set(pong) == {"type", "ts", "ref"} and pong["ref"] == 7 and TS_RE.fullmatch(pong["ts"])


def test_quit(connect, witnesses):
    bob, carol = witnesses
    alice = connect("alice", rooms=["lobby", "dev"])
    dave = connect("dave", rooms=["dev"])
    bob.expect("join", name="alice")
    alice.send({"type": "quit", "reason": "gone home"})
    assert_closed(alice, "quit")
    for who, room in ((bob, "lobby"), (carol, "lobby"), (dave, "dev")):
        leave = who.expect("leave", name="alice")
        assert leave["room"] == room and leave["reason"] == "gone home"
    assert connect().hello("alice")["name"] == "alice"  # the name is free again
    assert_room_carries_on(bob, carol)


def test_quit_without_reason(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send({"type": "quit"})
    assert_closed(alice, "quit")
    assert bob.expect("leave", name="alice")["reason"] == "quit"


def test_disconnect_tells_rooms(connect, server):
    alice, bob = connect("alice"), connect("bob")
    line = LineClient(server.port)
    line.send("carol\n")
    line.expect(r"carol joined lobby")
    line.close()  # no session token: nothing to come back with, gone at once
    assert bob.expect("leave", name="carol")["room"] == "lobby"
    alice.send({"type": "quit", "reason": "lunch"})
    assert bob.expect("leave", name="alice")["reason"] == "lunch"


# ---------------------------------------------------------------------------
# resume


def test_since_resume_gets_exactly_the_missed_messages(connect):
    alice = connect()
    session = alice.hello("alice", rooms=["lobby", "dev"])["session"]
    bob = connect("bob", rooms=["lobby", "dev"])
    bob.send({"type": "say", "text": "seen", "room": "lobby"})
    last_lobby = alice.expect("msg", text="seen")["id"]
    bob.send({"type": "say", "text": "seen dev", "room": "dev"})
    last_dev = alice.expect("msg", text="seen dev")["id"]
    alice.close()  # dropped: her name and rooms wait for her session token
    missed = {"lobby": [], "dev": []}
    seen_by_bob = []
    for i in range(5):
        for room in missed:
            bob.send({"type": "say", "text": f"{room} {i}", "room": room})
            missed[room].append(bob.expect("msg", text=f"{room} {i}")["id"])
            seen_by_bob += bob.skipped
    again = connect()
    since = {"lobby": last_lobby, "dev": last_dev}
    again.hello("alice", rooms=["lobby", "dev"], since=since, session=session)
    for room in ("lobby", "dev"):
        history = again.expect("history", room=room)
        assert [m["id"] for m in history["messages"]] == missed[room]
        assert history["more"] is True
    bob.send({"type": "say", "text": "new", "room": "lobby"})
    assert again.expect("msg")["text"] == "new"  # nothing duplicated before the new one
    assert bob.expect("msg", text="new")
    seen_by_bob += bob.skipped
    assert not [e for e in seen_by_bob if e.get("name") == "alice"], seen_by_bob


def test_history_replies_fit_in_a_frame(make_server, open_client):
    srv = make_server(max_frame=4000, max_text=1000, msg_rate=0)
    alice = open_client(srv.port, "alice")
    ids = []
    for i in range(12):
        alice.send({"type": "say", "text": f"{i:02d}" + "x" * 900})
        ids.append(alice.expect("msg")["id"])
    alice.send({"type": "history", "room": "lobby", "limit": 12, "ref": "h"})
    page = alice.expect("history", ref="h")
    got = [m["id"] for m in page["messages"]]
    assert got and got == ids[-len(got) :] and len(got) < 12 and page["more"] is True
    # A joiner's backlog comes in as many frames as it takes, oldest first.
    bob = open_client(srv.port)
    bob.hello("bob")
    backlog, frames = [], 0
    while len(backlog) < 12:
        payload = bob.recv_payload()
        reply = json.loads(payload)
        if reply["type"] == "history":
            assert len(payload) <= 4000
            backlog += [m["id"] for m in reply["messages"]]
            frames += 1
    assert backlog == ids and frames > 1
