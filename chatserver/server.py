"""Listening, connection limits, signals and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import ipaddress
import logging
import signal
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from . import __version__
from .config import Settings
from .connection import Connection, ConnectionHandler, State, set_linger
from .history import HistoryStore, MemoryHistory
from .hub import Hub
from .listener import (
    Listener,
    SpareDescriptor,
    fit_warning,
    open_file_limits,
    open_sockets,
    raise_open_file_limit,
    somaxconn,
)
from .log import ClusterError
from .ratelog import RateLimitedLog
from .sqlite_history import HistoryError, SQLiteHistory
from .tls import TLSError, server_context

log = logging.getLogger("chatserver")


MAX_REFUSING = 64  # clients over a limit being told server_full at once; past that, closed at once
SPARE_HOLD = 2.0  # seconds a client taken with the spare descriptor has to say what it speaks


class ChatServer:
    """The listening sockets and every connection task, around one hub.

    A connection counts against ``--max-clients`` and ``--max-per-ip`` from
    the moment it is accepted, TLS handshake included, until its socket is
    closed. One over a limit is told ``server_full`` (in its own framing, so
    after its first bytes) while few are; a TLS one, or one past that, is
    closed at once, before any work is spent on it.
    """

    def __init__(
        self,
        settings: Settings,
        store: HistoryStore | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        if tls is None and settings.tls_cert and settings.tls_key:
            tls = server_context(settings.tls_cert, settings.tls_key)
        self.tls = tls
        self.tls_address: tuple[str, int] | None = None
        self.store = store if store is not None else open_store(settings)
        self.hub: Hub | None = None
        self.cluster: Any = None  # the RedisLink, in cluster mode
        self.connections: dict[Connection, asyncio.Task[None]] = {}  # past the handshake
        self._tasks: set[asyncio.Task[None]] = set()  # one per accepted socket, until it closes
        self.admitted = 0  # connections counted against the limits
        self._per_ip: Counter[str] = Counter()
        self._refusing = 0
        self._listeners: list[Listener] = []
        self._spare: SpareDescriptor | None = None
        self._handshakes: asyncio.Semaphore | None = None
        self._refusals = RateLimitedLog(logging.INFO, "connections refused")
        self._no_descriptors = RateLimitedLog(logging.WARNING, "accepts out of descriptors")
        self._stopping = False
        self.address: tuple[str, int] = (settings.host, settings.port)

    async def start(self) -> None:
        set_linger(self.settings.close_linger, self.settings.sendq)
        log_seam = names = None
        if self.settings.redis:
            from .redis_log import RedisLink  # only in cluster mode: no Redis import otherwise

            log_seam = names = self.cluster = RedisLink(self.settings, self.store)
        self.hub = Hub(self.settings, self.store, asyncio.get_running_loop(), log_seam, names)
        self._spare = SpareDescriptor()
        self._handshakes = asyncio.Semaphore(self.settings.max_handshakes)
        try:
            for sock in await open_sockets(
                self.settings.host, self.settings.port, self.settings.listen_backlog
            ):
                self._listen(sock, tls=False)
            self.address = self._listeners[0].address
            if self.cluster is not None:
                if not self.hub.node:  # one process needs no name unless given one
                    self.hub.node = f"{socket.gethostname()}:{self.address[1]}"
                await self.cluster.start()  # the chat as it is now, before anyone is let in
            if self.tls is not None:
                # The same hub, limits and handlers; TLS underneath.
                port = self.settings.tls_port if self.settings.tls_port is not None else 5501
                first = len(self._listeners)
                for sock in await open_sockets(
                    self.settings.host, port, self.settings.listen_backlog
                ):
                    self._listen(sock, tls=True)
                self.tls_address = self._listeners[first].address
        except BaseException:
            self._close_listeners()
            raise
        for listener in self._listeners:
            listener.resume()

    def _listen(self, sock: socket.socket, tls: bool) -> None:
        assert self._spare is not None
        self._listeners.append(
            Listener(sock, tls, self._spare, self._accepted, self._out_of_descriptors)
        )

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._spare is not None:
            self._spare.close()

    # ------------------------------------------------------------------
    # Accepting

    def _accepted(self, sock: socket.socket, addr: Any, listener: Listener) -> None:
        """A socket fresh from accept: count it, refuse it, or close it at once."""
        ip = str(addr[0])
        peer = f"{ip}:{addr[1]}"
        if self._stopping:  # accepted in the turn shutdown began
            sock.close()
            return
        why = self._over_limit(ip)
        if why is None:
            self.admitted += 1
            self._per_ip[ip] += 1
            self._spawn(self._serve(sock, ip, peer, listener.tls))
        elif not listener.tls and self._refusing < MAX_REFUSING:
            self._refusals.note(f"{peer}: refused with server_full: {why}")
            self._refusing += 1
            self._spawn(self._refuse(sock, peer, why))
        else:
            # A TLS client cannot be told anything before a handshake, and a
            # handshake is the very work a flood wants us to do.
            sock.close()
            self._refusals.note(f"{peer}: closed at once: {why}")

    def _over_limit(self, ip: str) -> str | None:
        if self.admitted >= self.settings.max_clients:
            return f"the server is full ({self.settings.max_clients} connections)"
        if self._per_ip[ip] >= self.settings.max_per_ip and not _is_loopback(ip):
            return f"too many connections from {ip} (at most {self.settings.max_per_ip})"
        return None

    def _out_of_descriptors(
        self, listener: Listener, exc: OSError, taken: tuple[socket.socket, Any] | None
    ) -> None:
        """Accept failed for want of a descriptor; ``taken`` is a client accepted
        with the spare one, to be told ``server_full``."""
        limit = _open_file_limit()
        self._no_descriptors.note(
            f"out of file descriptors ({exc.strerror}"
            + (f"; the limit is {limit} open files" if limit else "")
            + "): new clients get server_full until some leave"
        )
        if taken is None:
            return  # it waits in the listen queue; accepting resumes when a descriptor frees
        sock, addr = taken
        if listener.tls or self._stopping:
            sock.close()
            self._spare_back()
            return
        self._refusing += 1
        why = "the server is out of file descriptors"
        self._spawn(self._refuse(sock, f"{addr[0]}:{addr[1]}", why, hold=SPARE_HOLD, spare=True))

    def _spare_back(self) -> None:
        assert self._spare is not None
        self._spare.returned()
        self._resume_listeners()

    def _resume_listeners(self) -> None:
        """A descriptor was freed: a listener paused for want of one may go on."""
        for listener in self._listeners:
            if listener.paused:
                listener.resume()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------
    # One connection, from accept to close

    async def _serve(self, sock: socket.socket, ip: str, peer: str, tls: bool) -> None:
        handler = self._handler(peer, None)
        reason = "server shutdown"
        try:
            if await (self._handshake(sock, peer, handler) if tls else _open(sock, handler)):
                reason = await handler.run()
        except asyncio.CancelledError:
            pass  # shutdown: nobody awaits this task
        except Exception:  # a bug of ours must cost one connection, never the server
            log.exception("%s: internal error", peer)
            reason = "internal error"
        finally:
            self._ended(handler, reason)
            self.admitted -= 1
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            self._resume_listeners()

    async def _refuse(
        self, sock: socket.socket, peer: str, why: str, hold: float = 0, spare: bool = False
    ) -> None:
        """Tell a client over a limit ``server_full`` once its first bytes say how."""
        handler = self._handler(peer, why)
        timer = None
        try:
            await _open(sock, handler)
            if hold:
                timer = asyncio.get_running_loop().call_later(hold, handler.conn.close)
            await handler.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: internal error", peer)
        finally:
            if timer is not None:
                timer.cancel()
            self._ended(handler, None)
            self._refusing -= 1
            if spare:
                self._spare_back()

    async def _handshake(self, sock: socket.socket, peer: str, handler: ConnectionHandler) -> bool:
        """TLS within the hello deadline: no work until the client speaks, then a
        slot among ``--max-handshakes``; whether the connection is open."""
        assert self._handshakes is not None and self.tls is not None
        loop = asyncio.get_running_loop()
        timeout = self.settings.hello_timeout or None
        deadline = None if timeout is None else loop.time() + timeout
        handed = False
        try:
            async with asyncio.timeout_at(deadline):
                # Waiting costs a socket and this task; a handshake, a few
                # hundred KiB (asyncio's and uvloop's TLS layers read into 256 KiB).
                await _readable(sock)
                if not _has_bytes(sock):
                    log.info("%s: closed before a TLS handshake", peer)
                    return False
                await self._handshakes.acquire()
            try:
                handed = True  # from here on the transport owns the socket
                # The rest of the deadline is the TLS layer's to keep (None:
                # its default of 60 s); it aborts a handshake that runs over.
                left = None if deadline is None else max(deadline - loop.time(), 0.001)
                await _open(sock, handler, self.tls, left)
            finally:
                self._handshakes.release()
            return True
        except (TimeoutError, ConnectionAbortedError):  # ours, or the TLS layer's
            log.info("%s: no TLS handshake within %ss", peer, timeout)
        except OSError as exc:  # ssl.SSLError, a reset, EOF
            log.info("%s: TLS handshake failed: %s", peer, getattr(exc, "reason", None) or exc)
        finally:
            if not handed:
                sock.close()
        return False

    def _handler(self, peer: str, refuse: str | None) -> ConnectionHandler:
        """The protocol for one accepted socket. Its connection is counted in
        :attr:`connections` once made, before its first bytes are read."""
        assert self.hub is not None
        task = asyncio.current_task()
        assert task is not None

        def opened(conn: Connection) -> None:
            self.connections[conn] = task
            if refuse is None:
                log.info("%s: connect", peer)

        return ConnectionHandler(self.hub, self.settings, peer, refuse, opened)

    def _ended(self, handler: ConnectionHandler, reason: str | None) -> None:
        """The connection's task is ending: forget its connection, if one was
        made, and log why (``reason``; None for a refusal: not logged)."""
        if handler.state is State.OPENING:
            return  # no transport: the handshake failed, or shutdown came first
        self._forget(handler.conn)
        if reason is not None:
            log.info("%s: disconnect (%s)", handler.conn, reason)

    def _forget(self, conn: Connection) -> None:
        assert self.hub is not None
        self.hub.connection_lost(conn)  # no quit: its name may wait for it (--name-grace)
        conn.close()
        del self.connections[conn]

    # ------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop accepting, send `bye shutdown` to everyone, wait for them, close."""
        self._stopping = True
        self._close_listeners()
        if self.hub is not None:
            self.hub.shutdown(self.connections)
        talking = set(self.connections.values())
        for task in self._tasks - talking:
            task.cancel()  # in a handshake, or waiting for one: nothing to tell them
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
            for conn in list(self.connections):
                conn.transport.abort()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        self._refusals.close()
        self._no_descriptors.close()
        if self.cluster is not None:
            await self.cluster.close()
        self.store.close()


async def _open(
    sock: socket.socket,
    handler: ConnectionHandler,
    tls: ssl.SSLContext | None = None,
    handshake_timeout: float | None = None,
) -> bool:
    """Make the transport of an accepted socket, ``handler`` its protocol from
    the start (after the TLS handshake, if any, it is called on its own)."""
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(
        lambda: handler, sock, ssl=tls, ssl_handshake_timeout=handshake_timeout if tls else None
    )
    return True


async def _readable(sock: socket.socket) -> None:
    """Until the client has sent something (or closed)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, _set_ready, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _has_bytes(sock: socket.socket) -> bool:
    """Whether a readable socket holds data (not only an EOF or an error)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except (BlockingIOError, InterruptedError):
        return True  # nothing after all: the handshake will wait for it
    except OSError:
        return False


def _set_ready(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _open_file_limit() -> int | None:
    limits = open_file_limits()
    return limits[0] if limits else None


def open_store(settings: Settings) -> HistoryStore:
    """The history store the settings ask for (raises HistoryError)."""
    if settings.db == ":memory:":
        return MemoryHistory(settings.history_max)
    return SQLiteHistory(
        settings.db,
        settings.history_max,
        settings.history_days,
        settings.fsync,
        clock_floor=settings.redis is None,  # a cluster's archive keeps the log's ids
    )


def _stop_signals() -> list[signal.Signals]:
    """SIGINT, SIGTERM, and SIGHUP (a closed terminal or session) unless the
    server was started to ignore it (``nohup``)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        signals.append(hup)
    return signals


@functools.lru_cache(maxsize=4096)  # asked at every accept; a flood comes from few addresses
def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    store: HistoryStore | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run a server until SIGINT, SIGTERM or SIGHUP (or ``stop`` is set), then shut down."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    caught: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        caught.append(sig.name)
        stop.set()

    for sig in _stop_signals():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    server = ChatServer(settings, store, tls)
    try:
        await server.start()
    except BaseException:
        server.store.close()
        raise
    host, port = server.address
    if server.tls_address is not None:
        log.info("TLS on %s:%d", *server.tls_address)
    loop_name = type(loop).__module__.split(".")[0]
    log.info(
        "chatserver %s listening on %s:%d (%s loop, history in %s)",
        __version__,
        host,
        port,
        loop_name,
        settings.db,
    )
    warning = fit_warning(settings.max_clients, MAX_REFUSING)
    if warning:
        log.warning("%s", warning)
    cap = somaxconn()
    if cap is not None and cap < settings.listen_backlog:
        # The kernel shortens the queue without a word: a storm past it waits
        # for SYN retries (1 s, 3 s, ...) instead of queueing.
        log.warning(
            "--listen-backlog %d is capped at %d by net.core.somaxconn",
            settings.listen_backlog,
            cap,
        )
    try:
        await stop.wait()
    finally:
        on = f" on {caught[0]}" if caught else ""
        log.info("shutting down%s: %d connections", on, server.admitted)
        await server.shutdown()
        log.info("stopped")


def run(settings: Settings) -> int:
    """The console entry point's body: logging, the event loop, exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    raise_open_file_limit()
    loop_factory = None
    if settings.loop != "asyncio":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            if settings.loop == "uvloop":
                log.error("--loop uvloop: uvloop is not installed (pip install chatserver[fast])")
                return 2
    tls = None
    if settings.tls_cert and settings.tls_key:
        try:
            tls = server_context(settings.tls_cert, settings.tls_key)
        except TLSError as exc:
            log.error("%s", exc)
            return 4
    try:
        store = open_store(settings)
    except HistoryError as exc:
        log.error("%s", exc)
        return 3
    # Everything made so far (modules, classes, settings) lives as long as the
    # process: out of the collector's sight, it no longer lengthens every
    # full collection, each a pause of the whole chat.
    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(settings, store=store, tls=tls))
    except OSError as exc:
        log.error("cannot listen on %s", exc.strerror or exc)
        return 1
    except ClusterError as exc:
        log.error("%s", exc)
        return 5
    return 0
