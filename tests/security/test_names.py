"""Names that imitate others: look-alikes share a UTS #39 skeleton key, invisible
characters and mixed scripts are refused; room names are bounded when folded."""

from __future__ import annotations

import pytest

from tests.helpers import Client, LineClient
from tests.server.support import assert_alive, assert_error


def refused(port: int, name: str) -> dict:
    client = Client(port)
    try:
        client.send({"type": "hello", "name": name, "ref": "h"})
        events = client.wait_closed()
        assert events and events[-1]["type"] == "error", events
        return events[-1]
    finally:
        client.close()


def test_compatibility_forms_are_the_same_name(connect, server) -> None:
    alice = connect("alice")
    fullwidth = "\uff41\uff4c\uff49\uff43\uff45"
    math_bold = "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e"
    for twin in (fullwidth, "ALICE", math_bold, "\uff21lice"):
        assert refused(server.port, twin)["code"] == "name_taken", twin
    assert_alive(alice)


def test_a_nfkc_name_is_shown_in_its_plain_form(connect) -> None:
    watcher = connect("watcher")
    fish = connect("ﬁsh")  # the fi ligature
    assert watcher.expect("join", name="fish")["name"] == "fish"
    fish.send({"type": "say", "text": "blub"})
    assert watcher.expect("msg", text="blub")["from"] == "fish"


@pytest.mark.parametrize(
    "name",
    [
        "\u0430lice",  # Cyrillic a + Latin lice
        "p\u0430ypal",  # Cyrillic a inside
        "adm\u0456n",  # Cyrillic i
        "\u03bfscar",  # Greek omicron
        "bob\u0432",  # Latin + Cyrillic
    ],
)
def test_mixed_script_look_alikes_are_refused(connect, server, name) -> None:
    alice = connect("alice")
    error = refused(server.port, name)
    assert error["code"] == "bad_name" and "scripts" in error["message"], error
    assert_alive(alice)


@pytest.mark.parametrize(
    "name", ["Дмитрий", "田中", "田中さん", "Ελένη", "Zoë", "José-Luis", "김민준"]
)
def test_names_in_one_script_are_welcome(connect, name) -> None:
    client = connect(name)
    assert_alive(client)


def test_room_names_follow_the_same_rules(connect) -> None:
    alice = connect("alice")
    alice.send({"type": "join", "room": "\uff24\uff25\uff36", "ref": 1})  # fullwidth DEV
    assert alice.expect("join", room="dev")["name"] == "alice"
    alice.send({"type": "join", "room": "d\u0435v", "ref": 2})  # Cyrillic e
    error = alice.expect("error")
    assert error["code"] == "bad_room" and error["ref"] == 2


# ---------------------------------------------------------------------------
# Issue 12, item 6: look-alikes that render exactly as the real name.

HANGUL_FILLER = "\u3164"
HALFWIDTH_HANGUL_FILLER = "\uffa0"


@pytest.mark.parametrize(
    "name",
    [
        "alice" + HANGUL_FILLER,  # NFKC makes it alice + U+1160, shown as <alice>
        "alice" + HALFWIDTH_HANGUL_FILLER,
        HANGUL_FILLER * 4,  # a name made only of fillers
        "ali\u200bce",
    ],
)
def test_invisible_characters_make_no_twin(connect, server, name) -> None:
    alice = connect("alice")
    error = refused(server.port, name)
    assert error["code"] == "bad_name" and "invisible" in error["message"], error
    assert error["ref"] == "h"
    assert_alive(alice)


def test_invisible_characters_are_refused_from_line_clients_too(connect, server) -> None:
    alice = connect("alice")
    nc = LineClient(server.port)
    try:
        nc.send(("alice" + HANGUL_FILLER + "\n").encode())
        assert "!! bad_name: " in nc.expect(r"!! ")
    finally:
        nc.close()
    assert_alive(alice)


@pytest.mark.parametrize(
    ("real", "twin", "code"),
    [
        ("alice", "al\u0131ce", "name_taken"),  # dotless i: the same skeleton
        ("alice", "aIice", "name_taken"),  # capital i for the l
        ("alice", "a|ice", "name_taken"),
        ("alice", "\u1d00lice", "bad_name"),  # small capital A: not a letter for names
        ("bob", "b\u1040b", "bad_name"),  # Myanmar zero: mixes scripts
        ("bob", "B0B", "name_taken"),
        ("paypal", "\u0440\u0430\u0443\u0440\u0430\u0456", "name_taken"),  # all Cyrillic
    ],
)
def test_look_alikes_of_an_online_user_are_refused(connect, server, real, twin, code) -> None:
    user = connect(real)
    assert refused(server.port, twin)["code"] == code
    assert_alive(user)


def test_a_look_alike_spelling_is_the_same_name_everywhere(connect, server) -> None:
    # Nobody is called alice yet: the dotless spelling is welcome and shown as typed.
    dotless = "al\u0131ce"
    twin = connect()
    assert twin.hello(dotless)["name"] == dotless
    assert refused(server.port, "alice")["code"] == "name_taken"
    carol = connect("carol")
    carol.send({"type": "nick", "name": "aIice", "ref": "n"})
    assert_error(carol, "name_taken", "n")
    # A dm names the same user in any spelling that shares her key.
    carol.send({"type": "dm", "to": "ALICE", "text": "hi", "ref": "d"})
    assert carol.expect("dm", ref="d")["to"] == dotless
    assert twin.expect("dm", text="hi")["from"] == "carol"


# ---------------------------------------------------------------------------
# Room names: the folded form is bounded, so every spelling of a room works.


def test_a_room_that_grows_past_32_when_folded_is_refused_at_once(connect) -> None:
    alice = connect("alice")
    alice.send({"type": "join", "room": "\u00df" * 20, "ref": 1})  # 40 characters folded
    assert_error(alice, "bad_room", 1)
    alice.send({"type": "join", "room": "dev\u200b", "ref": 2})
    assert "invisible" in assert_error(alice, "bad_room", 2)["message"]
    assert_alive(alice)


def test_a_room_accepted_once_is_accepted_in_every_spelling(connect, server) -> None:
    canonical = "s" * 32
    alice = connect("alice")
    alice.send({"type": "join", "room": "\u00df" * 16, "ref": "j"})
    assert alice.expect("join", room=canonical)["name"] == "alice"
    alice.send({"type": "say", "room": canonical, "text": "one", "ref": "s1"})
    first = alice.expect("msg", ref="s1")
    assert first["room"] == canonical
    alice.send({"type": "say", "room": "\u1e9e" * 16, "text": "two", "ref": "s2"})  # capital ß
    assert alice.expect("msg", ref="s2")["room"] == canonical
    alice.send({"type": "who", "room": "SS" * 16, "ref": "w"})
    assert alice.expect("who", ref="w")["names"] == ["alice"]
    alice.send({"type": "history", "room": "#" + canonical, "ref": "h"})
    assert [m["text"] for m in alice.expect("history", ref="h")["messages"]] == ["one", "two"]
    # A resume names the room as the server spelled it.
    back = Client(server.port)
    try:
        back.send(
            {
                "type": "hello",
                "name": "alice2",
                "rooms": [canonical],
                "since": {canonical: first["id"]},
            }
        )
        assert canonical in back.expect("welcome")["rooms"]
        replay = back.expect("history", room=canonical)
        assert [m["text"] for m in replay["messages"]] == ["two"]
    finally:
        back.close()
