"""The cluster harness: our own redis-server, several chatserver processes, and
clients that count every message they get.

- :class:`RedisProcess` (from the benchmark, one launcher for both) runs
  redis-server in a directory of the test with the append-only file synced
  on every write, on a free port; it can be killed with SIGKILL and started
  again on the same directory and port, with its data or wiped.
- :class:`Node` is a :class:`tests.helpers.ProcessServer` with ``--redis URL
  --node NAME --db PATH``: its port is read from its log, and it can be
  killed (SIGKILL), paused (SIGSTOP), resumed (SIGCONT) and restarted on the
  same port and database.
- :class:`CountingClient` is a :class:`tests.helpers.Client` that records
  the id of every message it receives, live or replayed, per room;
  :func:`count` compares that with what was sent (loss, duplicates, order)
  and :func:`assert_each_got` waits until every client has it all.

Without redis-server (on PATH, or ``$CHATSERVER_REDIS_SERVER``) the cluster
tests are skipped, all on one line of pytest's summary; with
``CHATSERVER_REQUIRE_REDIS=1`` (CI) they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatserver.bench.redisproc import BINARY_ENV, RedisProcess, RedisReplyError, redis_server_path
from tests.helpers import TIMEOUT, Client, ProcessServer

__all__ = [
    "TIMEOUT",
    "Count",
    "CountingClient",
    "Node",
    "RedisProcess",
    "RedisReplyError",
    "assert_each_got",
    "count",
    "skip_without_redis",
    "start_nodes",
]

REQUIRE_ENV = "CHATSERVER_REQUIRE_REDIS"


def why_no_redis() -> str | None:
    """Why the cluster tests cannot run here, or None when they can."""
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install '.[cluster]')"
    if redis_server_path() is not None:
        return None
    where = os.environ.get(BINARY_ENV)
    if where:
        return f"${BINARY_ENV}={where} is not an executable redis-server"
    return "redis-server is not on PATH (apt-get install redis-server)"


def redis_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def skip_without_redis() -> None:
    """Without a redis-server, skip what calls it (a test, a module, a conftest);
    where one is required, fail instead.

    The skip is raised from this one line with one reason, so pytest's
    summary folds every skip it causes into a single line that says why.
    """
    why = why_no_redis()
    if why is None:
        return
    if redis_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {why}: the cluster tests must run here", False)
    pytest.skip(f"cluster tests skipped: {why}", allow_module_level=True)


# ---------------------------------------------------------------------------
# Server processes


class Node(ProcessServer):
    """One chatserver process; in cluster mode ``--redis URL --node NAME``.

    ``db`` is its own SQLite archive (every process keeps one). Without a
    ``redis_url`` it is a single-process server, for comparisons.
    """

    def __init__(
        self, name: str, db: str | os.PathLike[str], *args: str, redis_url: str | None = None
    ) -> None:
        self.name = name
        cluster = ["--redis", redis_url, "--node", name] if redis_url else []
        super().__init__("--msg-rate", "0", *cluster, "--db", str(db), *args)
        self._first_cmd = self.cmd

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, nothing flushed; the kernel resets its sockets."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: it holds its connections and answers nothing until :meth:`resume`."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, *, graceful: bool = False) -> None:
        """Kill it (if it runs; SIGTERM and its orderly shutdown when ``graceful``)
        and start it again with the same arguments, port and database."""
        if graceful and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(TIMEOUT)
        self.kill()
        self._launch([*self._first_cmd, "--port", str(self.port)], self.env)

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_nodes(
    n: int, redis: RedisProcess, directory: Path, *args: str, first: int = 1
) -> list[Node]:
    """``n`` processes sharing one chat through ``redis``: nodes n1, n2, ... each with
    its own database in ``directory``; ``args`` go to each of them."""
    return [
        Node(f"n{k}", directory / f"n{k}.db", *args, redis_url=redis.url)
        for k in range(first, first + n)
    ]


# ---------------------------------------------------------------------------
# Counting clients


@dataclass
class Count:
    """What one client got in one room, against what it should have got."""

    received: int
    missing: list[int] = field(default_factory=list)  # sent, never received
    duplicates: list[int] = field(default_factory=list)  # received more than once
    out_of_order: list[tuple[int, int]] = field(default_factory=list)  # (id, the higher before it)
    unexpected: list[int] = field(default_factory=list)  # received, never sent

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.out_of_order or self.unexpected)

    def __str__(self) -> str:
        parts = [f"{self.received} received"]
        for name in ("missing", "duplicates", "out_of_order", "unexpected"):
            values = getattr(self, name)
            if values:
                shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
                parts.append(f"{len(values)} {name.replace('_', ' ')} ({shown})")
        return "; ".join(parts)


def count(received: Sequence[int], expected: Iterable[int], *, after: int = 0) -> Count:
    """Compare the ids a client received (in arrival order) with those it should have.

    Ids up to ``after`` are left out on both sides (a joiner's backlog from
    before the test's window, say).
    """
    got = [i for i in received if i > after]
    want = {i for i in expected if i > after}
    out = Count(received=len(got))
    seen: set[int] = set()
    highest = 0
    for i in got:
        if i in seen:
            out.duplicates.append(i)
            continue
        seen.add(i)
        if i < highest:
            out.out_of_order.append((i, highest))
        highest = max(highest, i)
    out.missing = sorted(want - seen)
    out.unexpected = sorted(seen - want)
    return out


class CountingClient(Client):
    """A framed-JSON client that records every message it receives.

    Every event passes through :meth:`recv` (``expect`` and ``hello`` too), so
    nothing is missed while a test waits for something else: ``got[room]``
    holds the ids of every ``msg`` and every message of every ``history``
    (backlogs, resumes), in the order they arrived; ``dms`` the direct
    messages' ids.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        self.host = host
        self.port = port
        self.got: dict[str, list[int]] = defaultdict(list)
        self.dms: list[int] = []
        self.events: list[dict[str, Any]] = []  # everything else, in order
        self.echoes: dict[str, int] = {}  # ref -> id of this client's own messages
        self.refused: dict[str, dict[str, Any]] = {}  # ref -> the error that answered it
        self.session: str | None = None
        self.rooms: list[str] = []
        self.welcome: dict[str, Any] = {}
        self._refs = 0

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return self._count(super().recv(timeout))

    def wait_closed(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return [self._count(e) for e in super().wait_closed(timeout)]

    def _count(self, event: dict[str, Any]) -> dict[str, Any]:
        kind = event["type"]
        if kind == "msg":
            self.got[event["room"]].append(event["id"])
            if "ref" in event:
                self.echoes[event["ref"]] = event["id"]
        elif kind == "history":
            self.got[event["room"]].extend(m["id"] for m in event["messages"])
        elif kind == "dm":
            self.dms.append(event["id"])
        else:
            self.events.append(event)
            if kind == "error" and "ref" in event:
                self.refused[event["ref"]] = event
        return event

    def hello(self, name: str, **fields: Any) -> dict[str, Any]:
        self.welcome = super().hello(name, **fields)
        self.session = self.welcome.get("session")
        self.rooms = list(self.welcome.get("rooms") or fields.get("rooms") or ["lobby"])
        return self.welcome

    def since(self) -> dict[str, int]:
        """``hello.since`` for a resume: the last id seen in each room."""
        return {room: ids[-1] for room, ids in self.got.items() if ids}

    def resume(self, port: int, host: str | None = None) -> dict[str, Any]:
        """Drop this connection and come back on ``port`` (another node, say) with the
        session token and ``since``: what was missed must arrive, and nothing twice."""
        name = self.name
        self.close()
        Client.__init__(self, port, host or self.host)  # a new socket; the counts stay
        self.port = port
        fields: dict[str, Any] = {"rooms": self.rooms, "since": self.since()}
        if self.session:
            fields["session"] = self.session
        return self.hello(name, **fields)

    def send_say(self, text: str, room: str | None = None) -> str:
        """Send a message without waiting; its ``ref`` (see :meth:`wait_echoes`)."""
        self._refs += 1
        ref = f"c{self._refs}"
        self.send({"type": "say", "room": room or self.rooms[0], "text": text, "ref": ref})
        return ref

    def wait_echoes(self, refs: Sequence[str], timeout: float = TIMEOUT) -> list[int]:
        """The ids of these messages, once each one's echo has come (a refusal fails)."""
        deadline = time.monotonic() + timeout
        while True:
            refused = [self.refused[r] for r in refs if r in self.refused]
            assert not refused, refused
            if all(r in self.echoes for r in refs):
                return [self.echoes[r] for r in refs]
            self.recv(max(0.0, deadline - time.monotonic()))

    def say(self, text: str, room: str | None = None) -> int:
        """Send a message and wait for its echo; its id (a refusal fails the test)."""
        return self.wait_echoes([self.send_say(text, room)])[0]

    def read_until(self, room: str, ids: Iterable[int], timeout: float = TIMEOUT) -> None:
        """Read until every one of ``ids`` has arrived in ``room``, or the timeout."""
        want = set(ids)
        deadline = time.monotonic() + timeout
        while not want <= set(self.got[room]):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.recv(left)
            except AssertionError:
                return  # nothing more came: count() says what is missing

    def count(self, room: str, expected: Iterable[int], *, after: int = 0) -> Count:
        return count(self.got[room], expected, after=after)


def assert_each_got(
    clients: Iterable[CountingClient],
    room: str,
    expected: Iterable[int],
    *,
    after: int = 0,
    timeout: float = TIMEOUT,
) -> None:
    """Every client receives each of ``expected`` in ``room`` once, in id order, and
    nothing else (ids up to ``after`` aside)."""
    expected = list(expected)
    bad = []
    for c in clients:
        c.read_until(room, [i for i in expected if i > after], timeout)
        result = c.count(room, expected, after=after)
        if not result.ok:
            bad.append(f"{c.name} on port {c.port}: {result}")
    assert not bad, "\n".join(bad)
