"""The benchmark end to end: a tiny open-loop run against a real server process."""

from __future__ import annotations

import json

import pytest

from chatserver.bench.__main__ import main


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
