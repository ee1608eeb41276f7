"""Accepting connections ourselves, and the open-file budget they draw on.

``asyncio.start_server`` calls its callback only after a TLS handshake, so a
client holding unfinished handshakes was counted against no limit; and when
descriptors run out, asyncio logs a traceback per attempt while uvloop closes
clients without a word. Here the listening socket is read by hand: every
connection is seen (and counted by the server) at accept, and running out of
descriptors is answered through a spare one and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from .ratelog import RateLimitedLog

log = logging.getLogger("chatserver")

ACCEPT_BATCH = 64  # connections taken per wake-up before the rest of the loop gets a turn
RETRY_AFTER = 1.0  # out of descriptors with none spare: try again this late, or when one frees
# The spare was given back before the socket in its place was closed (a
# refused client's handler is done once its answer is queued): try again this
# soon, and twice as late each time it is still not free, up to RETRY_AFTER.
SPARE_RETRY = 0.005
# Accept errors that mean "no descriptor (or memory) for another socket".
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Address = Any  # what socket.accept() returns beside the socket: (host, port[, flow, scope])
OnAccept = Callable[[socket.socket, Address, "Listener"], None]
OnExhausted = Callable[["Listener", OSError, "tuple[socket.socket, Address] | None"], None]


class SpareDescriptor:
    """One descriptor held back, given up to accept a client when none is left.

    Without it a server at its limit cannot even take a client off the queue
    to tell it ``server_full``; the client would wait or be dropped unheard.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self._lent = 0  # clients taken in its place and being refused
        self.restore()

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def owed(self) -> bool:
        """Given back, but not held again yet."""
        return self._fd is None and not self._lent

    def restore(self) -> bool:
        """Hold a descriptor again (false while none is free). Also while one is
        lent: a descriptor freed meanwhile goes to the spare, not to the next
        client, or the next refusal would find none."""
        if self._fd is None:
            try:
                self._fd = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return False
        return True

    def accept(self, listening: socket.socket) -> tuple[socket.socket, Address] | None:
        """Give the spare up and accept one client in its place (None if no spare
        or nobody is waiting after all). Call :meth:`returned` when done with
        that client."""
        if self._fd is None:
            return None
        os.close(self._fd)
        self._fd = None
        try:
            taken = listening.accept()
        except OSError:
            self.restore()
            return None
        self._lent += 1
        return taken

    def returned(self) -> None:
        """The client taken in the spare's place is gone: hold one again (now, or
        before the next accept if its socket is not closed yet)."""
        self._lent -= 1
        self.restore()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Listener:
    """One listening socket, accepted from by hand in the event loop.

    Works alike on asyncio and uvloop: both watch a descriptor with
    ``add_reader``, and both take an accepted socket with
    ``connect_accepted_socket``.
    """

    def __init__(
        self,
        sock: socket.socket,
        tls: bool,
        spare: SpareDescriptor,
        on_accept: OnAccept,
        on_exhausted: OnExhausted,
    ) -> None:
        self.sock = sock
        self.tls = tls
        self._spare = spare
        self._on_accept = on_accept
        self._on_exhausted = on_exhausted
        self._loop = asyncio.get_running_loop()
        self._watching = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._spare_retry = SPARE_RETRY
        self._errors = RateLimitedLog(logging.WARNING, "accept errors")
        sockname = sock.getsockname()
        self.address: tuple[str, int] = (sockname[0], sockname[1])

    def resume(self) -> None:
        """Accept again (after a pause for want of descriptors)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._watching and not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self._watching = True

    @property
    def paused(self) -> bool:
        return not self._watching and not self._closed

    def pause(self, retry_after: float = RETRY_AFTER) -> None:
        """Stop accepting until :meth:`resume`, or ``retry_after`` at the latest."""
        if self._watching:
            self._loop.remove_reader(self.sock.fileno())
            self._watching = False
        if self._retry is None and not self._closed:
            self._retry = self._loop.call_later(retry_after, self.resume)

    def close(self) -> None:
        if self._closed:
            return
        if self._watching:
            self._loop.remove_reader(self.sock.fileno())
            self._watching = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._closed = True
        self._errors.close()
        self.sock.close()

    def _accept(self) -> None:
        # The spare first: a descriptor freed since it was given back goes to
        # it, not to the next client (a refused client's socket closes a turn
        # or two after its handler is done).
        self._spare.restore()
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client left before it was taken
            except OSError as exc:
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    # A network error for that one client (Linux reports some
                    # on accept): the next one may do fine.
                    self._errors.note(f"accept on {self.address[0]}:{self.address[1]}: {exc}")
                    continue
                self._exhausted(exc)
                return
            self._on_accept(sock, addr, self)

    def _exhausted(self, exc: OSError) -> None:
        """No descriptor for the next client: take it with the spare, if there is one.

        The listener stays readable while a client waits, so accepting pauses
        (no busy loop) until a descriptor frees, the spare is back, or
        :data:`RETRY_AFTER` passes.
        """
        taken = None
        if self._spare.held:
            taken = self._spare.accept(self.sock)
            if taken is None:
                return  # nobody was waiting after all: the next client wakes us
            self._spare_retry = SPARE_RETRY
            self.pause()
        elif self._spare.owed:  # given back, but its socket is not closed yet
            self.pause(self._spare_retry)
            self._spare_retry = min(RETRY_AFTER, 2 * self._spare_retry)
        else:  # lent to a client being refused: resumed when that one is done
            self.pause()
        self._on_exhausted(self, exc, taken)


async def open_sockets(host: str, port: int, backlog: int = 4096) -> list[socket.socket]:
    """Listening sockets for every address ``host`` names (as ``start_server`` binds).

    ``backlog``: connections the kernel queues until they are accepted.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise OSError(exc.errno, f"{host}:{port}: {exc.strerror}") from None
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as getaddrinfo gave them (as asyncio does).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise OSError(exc.errno, f"{addr[0]}:{addr[1]}: {exc.strerror}") from None
            # A burst (everyone reconnecting after a restart) waits in the
            # queue rather than being dropped; the kernel caps it (somaxconn).
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def somaxconn() -> int | None:
    """The kernel's cap on a listen backlog (Linux), or None where unknown."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


# -- the open-file budget


def open_file_limits() -> tuple[int, int] | None:
    """The (soft, hard) limits on open files; None where unknown (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft limit on open files to the hard one; return (soft, hard).

    The soft limit is often 1 024, well below ``--max-clients``; past it
    every accept fails. The hard limit is as far as a process may go alone.
    """
    limits = open_file_limits()
    if limits is None:
        return None
    import resource

    soft, hard = limits
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. an unlimited hard limit on macOS
            pass
    return soft, hard


def descriptors_in_use() -> int | None:
    """How many descriptors this process holds (Linux, macOS, the BSDs)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # less the one listdir itself held
        except OSError:
            continue
    return None


# Descriptors beside the connections, the refusals being answered and the
# spare: room for what opens later (SQLite's temporary files, DNS, a log file).
SLACK = 32


def fit_warning(max_clients: int, refusals: int) -> str | None:
    """A line for the log when ``max_clients`` connections cannot all be open
    at once (call it once the listeners and the store are open)."""
    limits = open_file_limits()
    if limits is None:
        return None
    limit = limits[0]
    in_use = descriptors_in_use()
    fits = max(0, limit - (SLACK if in_use is None else in_use) - refusals - 1 - SLACK)
    if max_clients <= fits:
        return None
    return (
        f"--max-clients {max_clients} does not fit the limit of {limit} open files "
        f"(ulimit -n; LimitNOFILE= under systemd): about {fits} connections fit, "
        "and clients past that get server_full"
    )
