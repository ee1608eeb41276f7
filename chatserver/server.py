"""Listening, connection limits, signals and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import ssl
import sys
from collections import Counter

from . import __version__
from .config import Settings
from .connection import Connection, ConnectionHandler, set_linger
from .history import HistoryStore, MemoryHistory
from .hub import Hub
from .sqlite_history import HistoryError, SQLiteHistory
from .tls import TLSError, server_context

log = logging.getLogger("chatserver")


class ChatServer:
    """The listening socket and every connection task, around one hub."""

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
        self._tls_server: asyncio.Server | None = None
        self.tls_address: tuple[str, int] | None = None
        self.store = store if store is not None else open_store(settings)
        self.hub: Hub | None = None
        self.connections: dict[Connection, asyncio.Task[None]] = {}
        self._per_ip: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._stopping = False
        self.address: tuple[str, int] = (settings.host, settings.port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        set_linger(self.settings.close_linger, self.settings.sendq)
        self.hub = Hub(self.settings, self.store, loop)
        self._server = await asyncio.start_server(
            self._on_connect, self.settings.host, self.settings.port, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        if self.tls is not None:
            # The same hub, limits and handlers; TLS underneath. A handshake
            # must finish within the hello timeout.
            port = self.settings.tls_port if self.settings.tls_port is not None else 5501
            self._tls_server = await asyncio.start_server(
                self._on_connect,
                self.settings.host,
                port,
                ssl=self.tls,
                ssl_handshake_timeout=self.settings.hello_timeout or None,
                reuse_address=True,
            )
            sockname = self._tls_server.sockets[0].getsockname()
            self.tls_address = (sockname[0], sockname[1])

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One task per connection (asyncio.start_server makes it)."""
        if self._stopping:  # accepted from the backlog after shutdown began
            writer.close()
            return
        peer_info = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peer_info[0])
        peer = f"{ip}:{peer_info[1]}"
        transport = writer.transport
        assert self.hub is not None
        conn = Connection(transport, peer, self.hub.closer)  # type: ignore[arg-type]
        task = asyncio.current_task()
        assert task is not None
        self.connections[conn] = task
        self._per_ip[ip] += 1
        refuse = self._over_limit(ip)
        log.info("%s: connect%s", peer, f" (refused: {refuse})" if refuse else "")
        reason = "?"
        handler = ConnectionHandler(self.hub, self.settings, conn, refuse)
        try:
            handler.start(reader)
            # The stream objects are not needed past the take-over; an idle
            # connection should not keep them alive.
            del reader, writer
            reason = await handler.run()
        except asyncio.CancelledError:
            # Not re-raised: on Python 3.11 start_server's done-callback calls
            # task.exception() on a cancelled task and logs a bogus traceback.
            reason = "server shutdown"
        except Exception:  # a bug of ours must cost one connection, never the server
            log.exception("%s: internal error", conn)
            reason = "internal error"
        finally:
            self.hub.connection_lost(conn)
            conn.close()
            del self.connections[conn]
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            log.info("%s: disconnect (%s)", conn, reason)

    def _over_limit(self, ip: str) -> str | None:
        if len(self.connections) > self.settings.max_clients:
            return f"the server is full ({self.settings.max_clients} connections)"
        if self._per_ip[ip] > self.settings.max_per_ip and not _is_loopback(ip):
            return f"too many connections from {ip} (at most {self.settings.max_per_ip})"
        return None

    async def shutdown(self) -> None:
        """Stop accepting, send `bye shutdown` to everyone, wait for them, close."""
        self._stopping = True
        for listener in (self._server, self._tls_server):
            if listener is not None:
                listener.close()
        if self.hub is not None:
            self.hub.shutdown(self.connections)
        tasks = list(self.connections.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
            for conn in list(self.connections):
                conn.transport.abort()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        self.store.close()


def open_store(settings: Settings) -> HistoryStore:
    """The history store the settings ask for (raises HistoryError)."""
    if settings.db == ":memory:":
        return MemoryHistory(settings.history_max)
    return SQLiteHistory(settings.db, settings.history_max, settings.history_days, settings.fsync)


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
    """Run a server until SIGINT/SIGTERM (or ``stop`` is set), then shut down."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
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
    try:
        await stop.wait()
    finally:
        log.info("shutting down: %d connections", len(server.connections))
        await server.shutdown()
        log.info("stopped")


def run(settings: Settings) -> int:
    """The console entry point's body: logging, the event loop, exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(message)s",
    )
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
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        return 1
    return 0
