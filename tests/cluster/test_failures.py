"""A cluster when things break: a process killed or stopped, Redis killed with
its data or without it, a process left behind by the log. Every message is
counted at every client."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.cluster.support import CountingClient, Node, RedisProcess, assert_each_got

pytestmark = pytest.mark.timeout(90)

FAST = ("--node-timeout", "2")  # a silent process is dead after 2 s (10 s by default)


def _until_accepted(client: CountingClient, text: str, timeout: float = 15) -> int:
    """Say ``text`` until the cluster takes it (``unavailable`` meanwhile); its id."""
    deadline = time.monotonic() + timeout
    while True:
        ref = client.send_say(text)
        while ref not in client.echoes and ref not in client.refused:
            client.recv(max(0.1, deadline - time.monotonic()))
        if ref in client.echoes:
            return client.echoes[ref]
        assert client.refused[ref]["code"] == "unavailable", client.refused[ref]
        assert time.monotonic() < deadline, "the cluster never took a message again"
        # The refusal is immediate: wait a little for Redis before the next try.
        time.sleep(0.05)  # pacing the retries (not waiting for an event)


def test_a_killed_process_frees_its_names_once_and_its_clients_resume_elsewhere(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b, c = cluster(3, *FAST)
    alice = counting(a.port, "alice")  # she will move from a to b
    dave = counting(a.port, "dave")  # he does not come back
    bob = counting(b.port, "bob")
    carol = counting(c.port, "carol")
    before = [alice.say("one"), bob.say("two"), carol.say("three")]
    assert_each_got([alice, dave, bob, carol], "lobby", before)

    killed = time.monotonic()
    a.kill()
    # Messages go on while alice is away; she resumes on b with her token.
    during = [bob.say(f"while away {i}") for i in range(20)]
    alice.resume(b.port)
    assert alice.welcome["node"] == "n2" and alice.welcome["name"] == "alice"
    during += [carol.say("after her return")]
    assert_each_got([alice, bob, carol], "lobby", before + during)

    # dave's name is freed with one leave to each room, seen by each member once.
    for x in (bob, carol):
        leave = x.expect("leave", name="dave", timeout=30)
        assert leave["reason"] == "connection lost"
    assert time.monotonic() - killed < 30
    for x in (bob, carol, alice):
        x.send({"type": "who", "ref": "w"})
        assert x.expect("who", ref="w")["names"] == ["alice", "bob", "carol"]
    # alice took hers over before the timeout: nobody saw her leave or rejoin.
    for x in (bob, carol):
        seen = [(e["type"], e.get("name")) for e in x.events if e["type"] in ("leave", "join")]
        assert ("leave", "alice") not in seen, seen
        assert seen.count(("leave", "dave")) == 1, seen
    # The name is free again: anyone may take it.
    counting(c.port, "dave")


def test_redis_killed_and_back_with_its_file_loses_nothing_acknowledged(
    cluster: Callable[..., list[Node]],
    counting: Callable[..., CountingClient],
    redis: RedisProcess,
) -> None:
    a, b = cluster(2, *FAST)
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    alice.expect("join", name="bob")
    acked = [alice.say(f"before {i}") for i in range(10)] + [bob.say("bob before")]

    redis.kill()
    # Every request that needs the log is refused, nothing of it happens; the
    # clients stay connected, and what needs no log still works.
    alice.send({"type": "say", "text": "lost?", "ref": "x"})
    assert alice.expect("error", ref="x")["code"] == "unavailable"
    bob.send({"type": "join", "room": "elsewhere", "ref": "j"})
    assert bob.expect("error", ref="j")["code"] == "unavailable"
    bob.send({"type": "nick", "name": "robert", "ref": "n"})
    assert bob.expect("error", ref="n")["code"] == "unavailable"
    bob.send({"type": "who", "ref": "w"})
    assert bob.expect("who", ref="w")["names"] == ["alice", "bob"]
    seen = len(bob.got["lobby"])
    bob.send({"type": "history", "limit": 100, "ref": "h"})
    assert [m["id"] for m in bob.expect("history", ref="h")["messages"]] == acked
    del bob.got["lobby"][seen:]  # asked for: not counted as deliveries

    redis.start()  # the same directory: its append-only file
    after = _until_accepted(alice, "after")
    assert after > max(acked)
    acked += [after, _until_accepted(bob, "bob after")]  # each process reconnects on its own
    assert_each_got([alice, bob], "lobby", acked)
    # What Redis kept is what was acknowledged: the refused one is nowhere.
    texts = [e[1][e[1].index(b"e") + 1] for e in redis.command("XRANGE", "chat:log", "-", "+")]
    assert not any(b"lost?" in t for t in texts)
    # Names and members are as they were: alice's name is still hers.
    late = CountingClient(b.port)
    late.send({"type": "hello", "name": "alice"})
    assert late.expect("error")["code"] == "name_taken"
    late.close()


def test_redis_back_empty_ids_never_go_back_and_resumes_say_gap(
    cluster: Callable[..., list[Node]],
    counting: Callable[..., CountingClient],
    redis: RedisProcess,
) -> None:
    a, b = cluster(2, *FAST)
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    alice.expect("join", name="bob")
    old = [alice.say(f"old {i}") for i in range(5)]
    assert_each_got([bob], "lobby", old)

    redis.restart(wipe=True)  # kill -9, and its data gone
    new = _until_accepted(bob, "new")
    assert new > max(old), "an id went back after Redis lost its data"
    # The processes put their users back: the names are still held.
    intruder = CountingClient(a.port)
    intruder.send({"type": "hello", "name": "bob"})
    assert intruder.expect("error")["code"] == "name_taken"
    intruder.close()
    # A resume from before the loss cannot be proven whole: it says so.
    carol = counting(b.port, "carol", since={"lobby": old[1]})
    replay = carol.expect("history", room="lobby")
    assert replay.get("gap") is True
    # One from after it can: no gap.
    dora = counting(a.port, "dora", since={"lobby": new})
    assert "gap" not in dora.expect("history", room="lobby")


def test_a_stopped_process_catches_up_from_the_log(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2, "--node-timeout", "30")
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    alice.expect("join", name="bob")
    a.pause()  # SIGSTOP: alice's process hears nothing for a while
    try:
        sent = [bob.say(f"while stopped {i}") for i in range(300)]
    finally:
        a.resume()
    sent.append(alice.say("back"))
    assert_each_got([alice, bob], "lobby", sent, timeout=20)
    assert not [e for e in alice.events if e["type"] == "history" and e.get("gap")]


def test_a_process_left_behind_by_the_log_says_gap(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2, "--node-timeout", "30", "--redis-keep", "20")
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    alice.expect("join", name="bob")
    a.pause()
    try:
        sent = [bob.say(f"too many {i}") for i in range(500)]  # far past what Redis keeps
    finally:
        a.resume()
    gap = alice.expect("history", room="lobby", timeout=20)
    assert gap["gap"] is True and gap["messages"] == []
    a.wait_log("lost or trimmed before this process read them")
    last = alice.say("still here")
    alice.read_until("lobby", [last])
    got = set(alice.got["lobby"])
    assert last in got and not got.issuperset(sent), "it cannot have read what was trimmed"
    # The others lost nothing.
    assert_each_got([bob], "lobby", [*sent, last])


def test_history_deeper_than_redis_keeps_comes_from_each_archive(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2, "--redis-keep", "20")
    alice = counting(a.port, "alice")
    bob = counting(b.port, "bob")
    sent = [alice.say(f"m{i}") for i in range(150)]
    for x in (alice, bob):
        x.send({"type": "history", "limit": 200, "ref": "all"})
        assert [m["id"] for m in x.expect("history", ref="all")["messages"]] == sent
    # A process restarted on its archive still has it all. (Killed, it would
    # lose its archive's last tenth of a second, and read it back from the
    # log: here the log keeps only 20 entries.)
    b.restart(graceful=True)
    carol = counting(b.port, "carol", rooms=["lobby"])
    carol.send({"type": "history", "limit": 200, "ref": "all"})
    assert [m["id"] for m in carol.expect("history", ref="all")["messages"]] == sent


def test_with_the_default_timeout_a_dead_process_is_freed_within_30_s(
    cluster: Callable[..., list[Node]], counting: Callable[..., CountingClient]
) -> None:
    a, b = cluster(2)  # --node-timeout as shipped (15 s)
    dave = counting(a.port, "dave", rooms=["lobby", "ops"])
    bob = counting(b.port, "bob", rooms=["lobby", "ops"])
    dave.say("here")
    killed = time.monotonic()
    a.kill()
    left = {bob.expect("leave", name="dave", timeout=30)["room"] for _ in range(2)}
    assert left == {"lobby", "ops"}  # one leave a room
    assert time.monotonic() - killed < 30
    counting(b.port, "dave")  # the name is free
