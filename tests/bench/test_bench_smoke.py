"""The benchmark end to end: a tiny open-loop run against a real server process."""

from __future__ import annotations

import json
import os

import pytest

from chatserver.bench.__main__ import main
from chatserver.bench.launcher import can_pin
from chatserver.bench.runner import Target, measure
from chatserver.bench.scenarios import SCENARIOS


@pytest.mark.timeout(30)
def test_tiny_run_counts_every_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    # 10 clients in 2 rooms of 5, all sending, 1 s: every message reaches the 4
    # other members of its room, and the counts must say exactly that.
    argv = ["bigroom", "--clients", "10", "--room-size", "5", "--rate", "100"]
    argv += ["--duration", "1", "--sample", "2", "--json", "--no-pin", "--workers", "1"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["ready"] == 10 and result["failed"] == 0
    assert result["rooms"] == 2
    assert 90 <= result["sent"] <= 101
    assert result["expected"] == result["sent"] * 4
    assert result["delivered"] == result["expected"]
    assert result["loss"] == 0
    assert result["cut_slow_consumer"] == 0 and result["cut_eof"] == 0
    assert result["latency_samples"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    assert result["server_rss_kib"] > 0
    assert result["passed"] is True
    assert "nodes" not in result and "redis_cpu" not in result  # cluster mode's fields
    # The machine's loopback write cost, measured before the run (microseconds).
    assert 0 < result["loopback_write_us"] < 10_000


@pytest.mark.timeout(60)
@pytest.mark.skipif(not can_pin(), reason="needs taskset and at least 2 CPUs")
def test_every_run_pins_its_server_to_cpu_0() -> None:
    # A sweep measures many times from one process: each run must start its
    # server pinned, and give the coordinator its CPUs back afterwards.
    scn = SCENARIOS["bigroom"].with_overrides(
        clients=4, room_size=4, senders=4, rate=40, duration=0.3, sample=1, drain=1.0
    )
    before = os.sched_getaffinity(0)
    for _ in range(2):
        rep = measure(scn, Target(workers=1, db_memory=True))
        assert rep.server_command is not None and rep.server_command[:3] == ["taskset", "-c", "0"]
        assert rep.delivered == rep.expected > 0
        assert os.sched_getaffinity(0) == before


@pytest.mark.timeout(60)
def test_storm_lets_everyone_in_and_back_after_a_restart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["storm", "--clients", "60", "--json", "--no-pin", "--no-peer"]
    argv += ["--server-arg=--quiet-room-size=20"]
    assert main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)["storm"]
    assert result["server"] == "chatserver" and result["clients"] == 60
    assert result["in_s"] > 0 and result["failed"] == 0, result
    assert result["restart_back_s"] > 0 and result["restart_failed"] == 0, result
    assert result["restart_tries"] >= 60  # each came back at least once, as the client does
    assert result["baseline_ms"]["p50"] is not None  # the bystanders chatted before it
    assert result["bystander_lost"] == 0
