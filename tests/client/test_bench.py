"""The client benchmark end to end in a tiny configuration: sane figures, no speed bounds."""

from __future__ import annotations

import itertools
import json

import pytest

from chatclient.bench.__main__ import main
from chatclient.bench.terminal import MAX_TAG, Scanner, tag, untag

pytestmark = pytest.mark.timeout(60)


def test_tags_are_unique_and_consecutive_ones_differ_in_every_letter() -> None:
    tags = [tag(n) for n in range(MAX_TAG)]
    assert len(set(tags)) == MAX_TAG
    assert all(untag(t.encode()) == n for n, t in enumerate(tags))
    for x, y in itertools.pairwise(tags):
        assert all(a != b for a, b in zip(x, y, strict=True))


def test_the_scanner_strips_escapes_cut_across_reads() -> None:
    scanner = Scanner()
    first = tag(7).encode()
    assert scanner.feed(b"ab\x1b[38;5") == (b"ab", [])
    assert scanner.feed(b";2mA " + first[:2]) == (b"A " + first[:2], [])
    assert scanner.feed(first[2:] + b" \x1b[?25h\x1b(B") == (first[2:] + b" ", [7])


def test_a_tiny_run_reports_every_key_and_every_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--lines", "200", "--keys", "5", "--key-rate", "20", "--duration", "0.5"]
    argv += ["--rate", "200"]
    assert main([*argv, "--json", "--no-pin"]) == 0
    results = {r["scenario"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert list(results) == ["keys", "busy", "hidden"]
    keys, busy, hidden = results["keys"], results["busy"], results["hidden"]
    assert keys["pane_lines"] == 200 and keys["keys"] == keys["keys_shown"] == 5
    assert busy["keys"] == busy["keys_shown"] >= 5  # 20 keys/s for about 0.5 s
    for r in (keys, busy):
        assert 0 < r["key_ms"]["p50"] <= r["key_ms"]["p95"] <= r["key_ms"]["max"]
    for r in (busy, hidden):
        assert r["sent"] == r["drawn"] == 100
    assert busy["catch_up_ms"] is not None and busy["catch_up_ms"] >= 0
    for r in results.values():
        assert 0 < r["cpu"] < 200 and r["seconds"] > 0
