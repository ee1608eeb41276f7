"""The cluster harness checked on its own: Redis killed and restarted with and
without its data, server processes paused, killed and restarted, and clients
that count every message (the cluster scenarios of issue 13 build on these)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.support import (
    CountingClient,
    Node,
    RedisProcess,
    RedisReplyError,
    count,
)

pytestmark = pytest.mark.timeout(60)


def test_redis_keeps_what_it_acknowledged_through_kill_9(redis: RedisProcess) -> None:
    ids = [redis.command("XADD", "log", "*", "n", str(i)) for i in range(50)]
    port = redis.port

    redis.restart()  # SIGKILL, then the same directory and port
    assert redis.port == port and "append only file" in "".join(redis.log)
    entries = redis.command("XRANGE", "log", "-", "+")
    assert [e[0] for e in entries] == ids
    assert [e[1] for e in entries] == [[b"n", str(i).encode()] for i in range(50)]

    redis.restart(wipe=True)  # data lost
    assert redis.command("XLEN", "log") == 0
    assert redis.aof_bytes() < 1024
    with pytest.raises(RedisReplyError, match="unknown command"):
        redis.command("NO-SUCH-COMMAND")


def test_a_paused_redis_answers_nothing_until_resumed(redis: RedisProcess) -> None:
    redis.pause()
    try:
        with pytest.raises(TimeoutError):
            redis.command("PING", timeout=0.3)
    finally:
        redis.resume()
    assert redis.command("PING") == "PONG"


@pytest.mark.runs_without_redis
def test_the_counts_see_loss_duplicates_and_order() -> None:
    assert count([1, 2, 3], [1, 2, 3]).ok
    bad = count([1, 3, 3, 2, 9], [1, 2, 3, 4])
    assert bad.missing == [4] and bad.duplicates == [3] and bad.unexpected == [9]
    assert bad.out_of_order == [(2, 3)]
    assert "1 missing (4)" in str(bad)
    assert count([5, 6, 7], [6, 7], after=5).ok  # an older backlog left out


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_every_message_is_counted_through_pause_kill_and_resume(
    mode: str,
    tmp_path: Path,
    cluster: Callable[..., list[Node]],
    counting: Callable[..., CountingClient],
) -> None:
    """Alice on node A, bob on node B (one process in single mode): a pause of B
    holds bob's messages back, a kill -9 of B drops him, and a resume on B
    after its restart brings what he missed; each counts every message."""
    if mode == "single":
        solo = Node("solo", tmp_path / "solo.db")
        a = b = solo
    else:
        a, b = cluster(2)
        solo = None
    try:
        alice = counting(a.port, "alice", rooms=["lobby"])
        bob = counting(b.port, "bob", rooms=["lobby"])
        if mode == "cluster":
            assert alice.welcome["node"] == "n1" and bob.welcome["node"] == "n2"
        sent = [alice.say(f"m{i}") for i in range(20)]
        for c in (alice, bob):
            c.read_until("lobby", sent)
            assert c.count("lobby", sent).ok, c.count("lobby", sent)

        b.pause()  # SIGSTOP
        try:
            refs = [alice.send_say(f"p{i}") for i in range(5)]
            with pytest.raises(AssertionError, match="no frame"):
                bob.recv(timeout=0.3)  # a stopped process sends nothing
        finally:
            b.resume()  # SIGCONT
        sent += alice.wait_echoes(refs)
        for c in (alice, bob):
            c.read_until("lobby", sent)
            assert c.count("lobby", sent).ok, c.count("lobby", sent)

        b.kill()  # SIGKILL: the kernel resets its connections
        bob.wait_closed()
        b.restart()  # the same port and database
        if a is b:
            alice.wait_closed()
            alice.resume(a.port)
        sent += [alice.say(f"k{i}") for i in range(5)]
        bob.resume(b.port)  # session and since: what he missed, once
        for c in (alice, bob):
            c.read_until("lobby", sent)
            assert c.count("lobby", sent).ok, c.count("lobby", sent)
        assert len(sent) == 30 and sent == sorted(sent)
    finally:
        if solo is not None:
            solo.stop()
