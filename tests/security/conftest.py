"""Attack tests: each one runs a real server process and an ordinary pair of users."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import Client

_refs = itertools.count()


class Bystanders:
    """Two ordinary users in the lobby whose round trips are timed during an attack."""

    def __init__(self, port: int) -> None:
        self.alice = Client(port)
        self.alice.hello("alice")
        self.bob = Client(port)
        self.bob.hello("bob")
        self.alice.expect("join", name="bob")

    def round_trip(self) -> float:
        """Alice says a line; seconds until her echo and bob's copy both came."""
        text = f"still here {next(_refs)}"
        start = time.monotonic()
        self.alice.send({"type": "say", "text": text, "ref": text})
        echo = self.alice.expect("msg", text=text)
        got = self.bob.expect("msg", text=text)
        assert got["id"] == echo["id"] and echo["ref"] == text
        for c in (self.alice, self.bob):
            bad = [e for e in c.skipped if e["type"] in ("error", "bye")]
            assert not bad, bad
        return time.monotonic() - start

    def baseline(self, n: int = 5) -> float:
        return max(self.round_trip() for _ in range(n))

    def assert_unhurt(self, baseline: float, n: int = 5) -> None:
        """Still chatting, and no slower than a generous multiple of the baseline.

        The bound is loose on purpose (shared 2-core CI): it catches a stalled
        loop (seconds), not jitter.
        """
        worst = max(self.round_trip() for _ in range(n))
        assert worst < max(0.5, 20 * baseline), (worst, baseline)

    def close(self) -> None:
        self.alice.close()
        self.bob.close()


@pytest.fixture
def bystanders() -> Iterator[Callable[[int], Bystanders]]:
    made: list[Bystanders] = []

    def make(port: int) -> Bystanders:
        b = Bystanders(port)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
