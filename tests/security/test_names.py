"""Names that imitate others: NFKC forms collide, mixed scripts are refused."""

from __future__ import annotations

import pytest

from tests.helpers import Client
from tests.server.support import assert_alive


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
