"""A lean Redis connection for the cluster's hot path: the log's writes and reads.

redis-py's asyncio client spends 120-260 µs of CPU a command (a connection
pool, timeouts as tasks, observability hooks: measured 2026-12-02), more
than a chat message costs in all. Every message of a cluster is one such
round trip on its way in and one on its way out, so those two go through
this: one TCP (or TLS, or Unix) connection, commands written as they come
(pipelined), replies parsed by hiredis, Redis's own C parser (which
redis[hiredis] brings), and handed back in order. Everything else (start,
heartbeats, reconnects) uses redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url


class RespError(Exception):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``): the command failed, the
    connection is fine."""


class RespConnection(asyncio.Protocol):
    """One connection; :meth:`call` sends at once and returns the reply's future."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=RespError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None

    @classmethod
    async def open(cls, url: str, timeout: float = 3.0) -> RespConnection:
        """Connect to the Redis of a ``redis://``, ``rediss://`` or ``unix://`` URL."""
        options = parse_url(url)
        loop = asyncio.get_running_loop()
        conn = cls()
        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            connect = loop.create_unix_connection(lambda: conn, options["path"])
        else:
            tls = ssl.create_default_context() if kind is SSLConnection else None
            connect = loop.create_connection(
                lambda: conn, options.get("host", "localhost"), options.get("port", 6379), ssl=tls
            )
        await asyncio.wait_for(connect, timeout)
        try:
            if options.get("password"):
                user = [options["username"]] if options.get("username") else []
                await asyncio.wait_for(conn.call("AUTH", *user, options["password"]), timeout)
            if options.get("db"):
                await asyncio.wait_for(conn.call("SELECT", options["db"]), timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command; its future has the reply (a RespError for an error
        reply) or raises ConnectionError if the connection is lost first."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._lost is not None or self._transport is None:
            future.set_exception(ConnectionError(f"Redis connection lost: {self._lost}"))
            return future
        self._transport.write(_pack(args))
        self._waiting.append(future)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def alive(self) -> bool:
        return self._transport is not None and self._lost is None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while (reply := reader.gets()) is not False:
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionError("closed by Redis")
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {self._lost}"))


def _pack(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)
