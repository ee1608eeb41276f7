"""The benchmark's cluster mode end to end: its own redis-server, server processes
with --redis, the clients spread over them, every delivery counted."""

from __future__ import annotations

import json

import pytest

from chatserver.bench.__main__ import main
from tests.cluster.support import skip_without_redis

pytestmark = pytest.mark.timeout(60)

TINY = ["--clients", "12", "--room-size", "6", "--rate", "100", "--duration", "1"]
TINY += ["--sample", "2", "--json", "--no-pin", "--workers", "1"]


def test_two_processes_share_the_rooms_and_every_delivery_is_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    skip_without_redis()
    assert main(["bigroom", *TINY, "--redis", "--nodes", "2"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["ready"] == 12 and result["failed"] == 0 and result["rooms"] == 2
    assert 90 <= result["sent"] <= 101
    assert result["delivered"] == result["expected"] == result["sent"] * 5
    assert result["loss"] == 0 and result["passed"] is True
    # Each room has members on both processes: both deliver, both are measured.
    assert result["nodes"] == 2 and len(result["node_delivered"]) == 2
    assert sum(result["node_delivered"]) == result["delivered"]
    assert all(n > 0 for n in result["node_delivered"])
    assert all(us > 0 for us in result["node_cpu_us_per_delivery"])
    assert result["server_cpu_us_per_delivery"] > 0
    assert result["redis_cpu_us_per_msg"] > 0 and result["redis_rss_kib"] > 0
    command = result["redis_command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--redis" in result["server_command"]


def test_the_comparison_runs_single_then_one_and_two_processes_with_redis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    skip_without_redis()
    assert main(["bigroom", *TINY, "--compare-cluster"]) == 0
    out = json.loads(capsys.readouterr().out)
    single, one, two = out["results"]
    assert "nodes" not in single  # the single process's JSON is what it always was
    assert (one["nodes"], two["nodes"]) == (1, 2)
    for r in out["results"]:
        assert r["delivered"] == r["expected"] > 0 and r["loss"] == 0
    summary = out["compare"]["bigroom"]
    assert [s["setup"] for s in summary["setups"]] == ["single", "1+R", "2+R"]
    assert summary["setups"][1]["vs_single"] > 0
    assert [p["nodes"] for p in summary["projection"]][:2] == [1, 2]
    assert all(p["msgs_per_s"] > 0 for p in summary["projection"])
