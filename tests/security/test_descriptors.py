"""Running out of file descriptors: raised at start, warned about, answered (issue 12).

Each server runs under a limit on open files set in its own process before any
of its code runs, as ``ulimit -n`` or systemd's ``LimitNOFILE=`` would.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import TIMEOUT, Client, LineClient, ProcessServer, read_to_eof
from tests.security.conftest import Bystanders
from tests.security.support import LOOPS

resource = pytest.importorskip("resource")  # POSIX only
pytestmark = pytest.mark.timeout(60)


class LimitedServer(ProcessServer):
    """A ProcessServer whose limit on open files is (soft, hard) from the start."""

    def __init__(self, soft: int, hard: int, *args: str) -> None:
        code = (
            "import resource, runpy; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
            "runpy.run_module('chatserver', run_name='__main__')"
        )
        self._launch([sys.executable, "-c", code, "--port", "0", "--db", ":memory:", *args])

    def cpu_seconds(self) -> float:
        """User and system time the server has used so far (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / 100  # clock ticks: USER_HZ is 100

    def stop_and_read_log(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        assert self.wait_exit() == 0
        return "".join(self.log)


@pytest.fixture
def limited() -> Iterator[Callable[..., LimitedServer]]:
    servers: list[LimitedServer] = []

    def start(soft: int, hard: int, *args: str) -> LimitedServer:
        server = LimitedServer(soft, hard, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _prlimit(pid: int) -> tuple[int, int]:
    if not hasattr(resource, "prlimit"):
        pytest.skip("no prlimit (Linux only)")
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_the_soft_limit_is_raised_and_a_misfit_is_warned_once(limited) -> None:
    server = limited(64, 512, "--loop", "asyncio")  # --max-clients 10 000 by default
    assert _prlimit(server.proc.pid) == (512, 512)
    warning = server.wait_log(r"WARNING .*--max-clients 10000 does not fit")
    match = re.search(r"limit of 512 open files .*about (\d+) connections fit", warning)
    assert match, warning
    assert 300 < int(match.group(1)) < 512, warning
    log = server.stop_and_read_log()
    assert log.count("does not fit") == 1 and "Traceback" not in log, log

    # When it fits, not a word.
    fits = limited(512, 512, "--loop", "asyncio", "--max-clients", "100")
    log = fits.stop_and_read_log()
    assert "does not fit" not in log and "WARNING" not in log, log


def _answer(client: Client) -> str:
    """welcome, or server_full then a close: never silence."""
    event = client.recv()
    if event["type"] == "welcome":
        return "welcome"
    assert (event["type"], event.get("code")) == ("error", "server_full"), event
    assert client.wait_closed() == []
    return "server_full"


@pytest.mark.parametrize("loop", LOOPS)
def test_out_of_descriptors_answers_server_full(limited, loop: str) -> None:
    """Issue 12: with descriptors gone, asyncio logged 5 986 tracebacks in 10 s
    and uvloop closed clients without a word. Now each gets server_full, the
    log says so once, and nothing spins while clients wait."""
    server = limited(48, 48, "--loop", loop, "--max-clients", "1000")
    users = Bystanders(server.port)
    flood: list[Client] = []
    try:
        baseline = users.baseline()
        for i in range(40):  # far past what 48 descriptors hold
            c = Client(server.port)
            flood.append(c)
            c.send({"type": "hello", "name": f"f{i}"})
            outcome = _answer(c)
            if outcome == "server_full":
                break
        else:
            raise AssertionError("never out of descriptors")
        assert len(flood) > 10  # the ones that fitted were welcomed
        # More, each told: framed JSON clients and a line-mode one alike.
        for i in range(10):
            c = Client(server.port)
            flood.append(c)
            c.send({"type": "hello", "name": f"more{i}"})
            assert _answer(c) == "server_full", "".join(server.log[-60:])
        line = LineClient(server.port)
        line.send(b"netcat\n")
        assert line.expect(r"!! server_full") and read_to_eof(line.sock) == b""
        line.close()
        users.assert_unhurt(baseline)

        # A client that says nothing holds the spare descriptor for a while;
        # those behind it wait in the queue, and the server does not spin.
        silent = Client(server.port)
        queued = [Client(server.port) for _ in range(5)]
        for i, c in enumerate(queued):
            c.send({"type": "hello", "name": f"queued{i}"})
        cpu0, started = server.cpu_seconds(), time.monotonic()
        for c in queued:
            assert _answer(c) == "server_full", "".join(server.log[-60:])
        waited = time.monotonic() - started
        assert waited > 1, waited  # they did wait for the silent one (its 2 s)
        assert server.cpu_seconds() - cpu0 < 0.5 * waited, (server.cpu_seconds() - cpu0, waited)
        assert silent.wait_closed() == []  # a clean close, after its hold
        flood += [silent, *queued]
        users.assert_unhurt(baseline)

        lines = [s for s in server.log if "out of file descriptors" in s]
        assert 1 <= len(lines) <= 2, lines
        assert not [s for s in server.log if "Traceback" in s or "ERROR" in s]
    finally:
        for c in flood:
            c.close()
    # With the flood gone there is room again.
    deadline = time.monotonic() + TIMEOUT
    while True:
        c = Client(server.port)
        c.send({"type": "hello", "name": "later"})
        if _answer(c) == "welcome":
            break
        c.close()
        assert time.monotonic() < deadline, "never room again"
    users.assert_unhurt(baseline)
    c.close()
    users.close()
