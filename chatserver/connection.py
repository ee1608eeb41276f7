"""One client connection: sniffing its kind, the handshake, the read loop, limits.

The handler is the transport's protocol from the start: bytes arrive by
callbacks, go through the sans-I/O decoders, and each validated request goes
to the hub. Output never goes through here: the hub queues it in
:attr:`Connection.out` and flushes it once per event-loop turn.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hmac
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .commands import HELP_LINES, ShowHelp, parse_line
from .encoding import encode_event, encode_lines
from .outbox import discard, last_bytes
from .protocol import (
    Bye,
    ClientKind,
    Dm,
    ErrorCode,
    ErrorEvent,
    FrameDecoder,
    Hello,
    History,
    Join,
    Leave,
    LineDecoder,
    Nick,
    Ping,
    ProtocolError,
    Quit,
    Ref,
    Rooms,
    Say,
    Who,
    check_name,
    decode_json_object,
    is_json_payload,
    parse_request,
    sniff,
)

if TYPE_CHECKING:
    from .config import Settings
    from .hub import Hub
    from .outbox import Pages

log = logging.getLogger("chatserver")

_NO_UNITS = ()
UNITS_PER_TURN = 256  # frames or lines handled from one client before others get a turn


class Connection:
    """A client as the hub sees it: its name, rooms, outbox and transport."""

    __slots__ = (
        "_closer",
        "_handler",
        "closing",
        "held",
        "key",
        "kind",
        "name",
        "on_ready",
        "out",
        "paused",
        "peer",
        "queue",
        "rooms",
        "session",
        "transport",
        "wait",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        peer: str,
        closer: Callable[[Connection, bytes], bool] | None = None,
        handler: ConnectionHandler | None = None,
    ) -> None:
        self.transport = transport
        self.peer = peer
        self.kind: ClientKind | None = None  # known once the first bytes arrive
        self.name = ""
        self.key: str | None = None  # the hub's key for this user, None when not registered
        self.session: str | None = None
        self.rooms: dict[str, None] = {}  # joined rooms, most recently joined last
        self.out: list[bytes] = []
        # Replies made page by page, and what waits behind them (outbox.py);
        # None on the hot path, where out is all there is.
        self.queue: deque[list[bytes] | Pages] | None = None
        self.held = 0  # bytes waiting in the queue
        self.paused = False  # the transport is over its high-water mark
        self.closing = False
        # Requests sent to a shared log and not back yet (a cluster): until they
        # are, nothing more is read, so that answers keep the requests' order.
        self.wait = 0
        self.on_ready: Callable[[], None] | None = None
        # Given by a hub whose output waits for the disk: it may take over the
        # close, to send the last bytes once they may be sent.
        self._closer = closer
        self._handler = handler  # told when the close begins, whoever begins it

    def current_room(self) -> str | None:
        return next(reversed(self.rooms), None)

    def close(self, bye: str | None = None, error: ErrorEvent | None = None) -> None:
        """Write what is queued, then the error and ``bye`` if any, and close.

        A client that will not read its last bytes is cut off after a linger.
        """
        if self.closing:
            return
        self.closing = True
        if self._handler is not None:
            self._handler.closed_by_server()
        if bye not in (None, "quit"):
            # Replies still to be made go to nobody who would read them: a
            # slow consumer, a connection replaced, the server shutting down.
            discard(self)
        last = b""
        if self.kind is not None:
            if error is not None:
                last += encode_event(error, self.kind, self.name)
            if bye is not None:
                last += encode_event(Bye(reason=bye), self.kind, self.name)
        if self._closer is not None and self._closer(self, last):
            return
        self.finish_close(last)

    def finish_close(self, last: bytes) -> None:
        """Write the outbox and ``last``, and close the transport."""
        data = last_bytes(self, _close_budget) + last
        transport = self.transport
        if transport.is_closing():
            return
        if data:
            transport.write(data)
        transport.close()
        loop = asyncio.get_running_loop()
        loop.call_later(_linger, transport.abort)

    def __str__(self) -> str:
        return f"{self.peer} {self.name}" if self.name else self.peer


_linger = 10.0  # set from Settings.close_linger by the server
_close_budget = 1 << 20  # bytes of pending pages a closing client is still made (its sendq)


def set_linger(seconds: float, sendq: int = _close_budget) -> None:
    global _linger, _close_budget
    _linger = seconds
    _close_budget = sendq


# Each request type and the hub method that applies it (shared by every
# connection: a per-connection table of closures cost ~1.5 KiB each).
_DISPATCH: dict[type, Callable[[Hub, Connection, Any], None]] = {
    Say: lambda hub, conn, r: hub.say(conn, r.text, r.room, r.action, r.ref),
    Dm: lambda hub, conn, r: hub.dm(conn, r.to, r.text, r.action, r.ref),
    Join: lambda hub, conn, r: hub.join(conn, r.room, r.ref),
    Leave: lambda hub, conn, r: hub.leave(conn, r.room, r.reason),
    Nick: lambda hub, conn, r: hub.nick(conn, r.name),
    Who: lambda hub, conn, r: hub.who(conn, r.room, r.ref),
    Rooms: lambda hub, conn, r: hub.list_rooms(conn, r.after, r.limit, r.ref),
    History: lambda hub, conn, r: hub.history(conn, r.room, r.before, r.limit, r.ref),
    Ping: lambda hub, conn, r: hub.pong(conn, r.ref),
    Quit: lambda hub, conn, r: hub.quit(conn, r.reason),
}


# What a request costs against the client's rate, in messages (1 when not
# listed): a reply that reads the store or a big list, and a join (a
# notice to every member and a replay of the backlog), cost what they make.
# Requests a connection may send on before the shared log has answered the
# last one: the log keeps their order, and they change nothing the next needs.
_PIPELINED = frozenset({Say, Dm})
_DEFERRED = object()  # a request put back until the log has answered

_PRICES: dict[type, Callable[[Any], float]] = {
    Join: lambda r: 4.0,
    Leave: lambda r: 2.0,
    Who: lambda r: 2.0,
    Rooms: lambda r: 1.0 + r.limit / 100,
    History: lambda r: 1.0 + r.limit / 50,
}


class State(enum.Enum):
    """Where a connection is in its life (:attr:`ConnectionHandler.state`).

    Every transition, and the one method that makes it::

        OPENING         -> SNIFFING        the transport is made, after   connection_made
                                           its TLS handshake if any
        SNIFFING        -> AWAITING_HELLO  the first bytes tell framed    _sniffed
                                           from line mode
        AWAITING_HELLO  -> REGISTERED      the hub took the hello         _registered
        AWAITING_HELLO  -> DENIED          a wrong password               _denied
        any but CLOSED  -> CLOSING         Connection.close, whether the  closed_by_server
                                           handler or the hub calls it
        any             -> CLOSED          the transport is lost, or the  _finish
                                           handler is done with it

    Input is heard in SNIFFING, AWAITING_HELLO and REGISTERED only, and the
    hello and frame clocks run only there. The connection's task returns
    once it is CLOSED: a connection closed while its input was being handled
    is done with at once (its last bytes are queued), one closed from
    elsewhere once its transport is lost.
    """

    OPENING = "opening"  # accepted; the transport (and TLS handshake) is being made
    SNIFFING = "sniffing"  # open; its first bytes will tell framed from line mode
    AWAITING_HELLO = "awaiting hello"  # the framing is known; no hello accepted yet
    REGISTERED = "registered"  # the hub knows it by its name
    DENIED = "denied"  # a wrong password: nothing more is heard; closed after a delay
    CLOSING = "closing"  # Connection.close has run: its last bytes are on their way
    CLOSED = "closed"  # its end is known: the connection's task returns


# Module-level, for the checks once a unit or a read (a class attribute costs a
# lookup more; and a set of states is kept off the hot path: an enum member's
# hash is a Python call).
_SNIFFING = State.SNIFFING
_REGISTERED = State.REGISTERED
_BEFORE_HELLO = frozenset({State.SNIFFING, State.AWAITING_HELLO})
_HEARD = _BEFORE_HELLO | {State.REGISTERED}


class ConnectionHandler(asyncio.Protocol):
    """Drives one connection from its accept to its close.

    It is the transport's protocol from the start (the server makes the
    transport with ``loop.connect_accepted_socket``); the connection's task
    owns it and waits in :meth:`run` until it ends. Reading through a
    ``StreamReader`` instead cost a future, a task wake-up and a copy per
    chunk, which at tens of thousands of messages a second was the largest
    cost of all (docs/performance.md).
    """

    __slots__ = (
        "_defer",
        "_done",
        "_frame_timer",
        "_head",
        "_held",
        "_hello_timer",
        "_last",
        "_opened",
        "_password_ok",
        "_pipelined",
        "_pos",
        "_refuse_why",
        "_resume_timer",
        "_tokens",
        "_units",
        "conn",
        "decoder",
        "hub",
        "loop",
        "peer",
        "settings",
        "state",
    )

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        peer: str,
        refuse: str | None = None,
        opened: Callable[[Connection], None] | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.peer = peer
        self.state = State.OPENING
        self.conn: Connection  # made with the transport, in connection_made
        self._opened = opened  # told of the connection once it is made
        self.loop = asyncio.get_running_loop()
        self.decoder: FrameDecoder | LineDecoder | None = None  # made by sniffing
        self._done: asyncio.Future[str] = self.loop.create_future()
        self._head = b""  # the first bytes, until they tell framed from line mode
        # Units decoded but not handled yet (a pause); an idle connection
        # holds the shared empty tuple, not a list of its own.
        self._units: list[bytes] | tuple[()] = _NO_UNITS
        self._pos = 0
        self._refuse_why = refuse  # over a limit: answer server_full to its first bytes
        self._frame_timer: asyncio.TimerHandle | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._resume_timer: asyncio.TimerHandle | None = None
        self._held = False  # reading paused until the hub's commit is done
        # With a shared log (a cluster): whether the last request may be followed
        # before its answer is back (messages may: the log keeps their order),
        # and whether the next one was put back to wait for it.
        self._pipelined = False
        self._defer = False
        self._password_ok = settings.password is None
        self._tokens = float(settings.msg_burst)
        self._last = self.loop.time()

    async def run(self) -> str:
        """Wait until the connection ends; return why, for the log."""
        try:
            return await self._done
        finally:
            self._stop_timers()
            if self._resume_timer is not None:
                self._resume_timer.cancel()

    # ------------------------------------------------------------------
    # The state's transitions (State lists them)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The hello deadline runs from here: from the accept for a plain
        # connection, from the end of its handshake for a TLS one.
        self.conn = Connection(transport, self.peer, self.hub.closer, self)  # type: ignore[arg-type]
        self.state = _SNIFFING
        opened, self._opened = self._opened, None  # not kept for the connection's life
        if opened is not None:
            opened(self.conn)
        if self.settings.hello_timeout > 0:
            self._hello_timer = self.loop.call_later(
                self.settings.hello_timeout, self._hello_expired
            )

    def _sniffed(self, framed: bool) -> None:
        max_frame = self.settings.max_frame
        self.decoder = FrameDecoder(max_frame) if framed else LineDecoder(max_frame)
        if not framed:
            self.conn.kind = ClientKind.LINE_LF  # refined by the first line's ending
        self.state = State.AWAITING_HELLO

    def _registered(self) -> None:
        self.state = _REGISTERED
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _denied(self) -> None:
        self.state = State.DENIED
        self._stop_timers()

    def closed_by_server(self) -> None:
        """``Connection.close`` has begun (the handler's doing or the hub's):
        nothing more is heard from this client."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSING
            self._stop_timers()

    def _finish(self, reason: str) -> None:
        self.state = State.CLOSED
        if not self._done.done():
            self._done.set_result(reason)

    def _stop_timers(self) -> None:
        """The hello and frame clocks: they only watch a connection still heard."""
        for timer in (self._hello_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._hello_timer = self._frame_timer = None

    def _stopped(self) -> bool:
        """After a unit or a pause: whether input is no longer heard (a closing
        connection's task may end now: its last bytes are queued)."""
        state = self.state
        if state in _HEARD:
            return False
        if state is State.CLOSING:
            self._finish("closed by server")
        return True

    # ------------------------------------------------------------------
    # Transport callbacks

    def data_received(self, data: bytes) -> None:
        if self.state is not _REGISTERED and self.state not in _HEARD:
            return
        try:
            self._received(data)
        except Exception:  # a bug of ours must cost one connection, never the server
            self._crashed()

    def _crashed(self) -> None:
        log.exception("%s: internal error", self.conn)
        self.hub.disconnect(self.conn, "disconnected")
        self.conn.close()
        self._finish("internal error")

    def _received(self, data: bytes) -> None:
        if self.state is _SNIFFING:
            data = self._sniff(data)
            if not data:
                # Not even the kind is known yet, but a frame or line has begun.
                if self.state is _SNIFFING:
                    self._watch_partial(bool(self._head))
                return
        decoder = self.decoder
        assert decoder is not None
        units = decoder.feed(data)
        if self._pos < len(self._units):  # paused: keep the order, handle them later
            self._units.extend(units)  # type: ignore[union-attr]  # non-empty: a list
            return
        self._units = units
        self._pos = 0
        self._handle_units()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def pause_writing(self) -> None:
        # Over the transport's high-water mark: no more pages are made for it
        # until it has sent most of what it holds (outbox.py).
        self.conn.paused = True

    def resume_writing(self) -> None:
        self.conn.paused = False
        if self.conn.queue is not None:
            self.hub.wake(self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is State.OPENING:
            return  # a failed handshake: never made, and the connect call raises
        if exc is not None:
            self._finish(f"connection error: {exc}")
        elif self.state is State.CLOSING:
            self._finish("closed by server")
        else:
            self._finish("disconnected")

    def _handle_units(self) -> None:
        """Handle the decoded units in order, pausing the reads of a client over its rate."""
        conn = self.conn
        units = self._units
        hub = self.hub
        budget = UNITS_PER_TURN
        while self._pos < len(units):
            if not budget:
                # One read can hold thousands of tiny frames: let the others
                # have a turn (without a rate limit nothing else would stop us).
                conn.transport.pause_reading()
                self._resume_timer = self.loop.call_soon(self._resume)  # type: ignore[assignment]
                return
            budget -= 1
            if self.state is not _REGISTERED and not hub.may_hello():
                # Enough hellos this turn (a reconnect storm): a later one, in
                # order. Its hello has come: the deadline for one no longer applies.
                if self._hello_timer is not None:
                    self._hello_timer.cancel()
                    self._hello_timer = None
                conn.transport.pause_reading()
                self._held = True
                hub.wait_hello(self._release)
                return
            if hub.holding and self.state is _REGISTERED:
                # The disk is behind: read nothing more until the commit that
                # runs is done (the batch after it stays bounded).
                conn.transport.pause_reading()
                self._held = True
                hub.after_commit(self._release)
                return
            unit = units[self._pos]
            self._pos += 1
            pause = self._on_unit(unit)
            if self.state is not _REGISTERED and self._stopped():
                return
            if conn.wait and (self._defer or not self._pipelined):
                # Gone to the shared log: the next request waits for its answer
                # (and then for its rate, if over it). Messages follow one
                # another at once; anything else waits for what went before.
                self._defer = False
                conn.transport.pause_reading()
                self._held = True
                conn.on_ready = functools.partial(self._release, pause) if pause else self._release
                return
            if pause:  # over its rate: stop reading this client for a while
                conn.transport.pause_reading()
                self._resume_timer = self.loop.call_later(pause, self._resume)
                return
        self._units = _NO_UNITS
        self._pos = 0
        decoder = self.decoder
        assert decoder is not None
        error = decoder.error
        if error is not None:
            log.info("%s: %s", conn, error)
            self._fatal(error)
            self._finish(f"protocol error {error.code}")
            return
        self._watch_partial(decoder.partial)

    def _release(self, pause: float = 0.0) -> None:
        self._held = False
        if pause:
            self._resume_timer = self.loop.call_later(pause, self._resume)
        else:
            self._resume()

    def _resume(self) -> None:
        """Go on after a pause (over the rate, or held for a commit)."""
        self._resume_timer = None
        if self._stopped():  # shut down, dropped or replaced meanwhile
            return
        try:
            self._handle_units()
        except Exception:
            self._crashed()
        if self._resume_timer is None and not self._held and self.state in _HEARD:
            self.conn.transport.resume_reading()

    # ------------------------------------------------------------------
    # Sniffing and the handshake

    def _sniff(self, data: bytes) -> bytes:
        """Collect the first bytes until they tell framed from line mode."""
        data = self._head + data
        framed = sniff(data)
        if framed is None:
            self._head = data
            return b""
        self._head = b""
        self._sniffed(framed)
        if self._refuse_why is not None:
            self._refuse(self._refuse_why)
            self._finish(f"refused: {self._refuse_why}")
            return b""
        return data

    def _refuse(self, why: str) -> None:
        conn = self.conn
        if conn.kind is None:
            # Framed, but JSON or plain text is not known yet: a JSON error frame
            # is what a framed client most likely understands.
            conn.kind = ClientKind.JSON
        conn.close(error=ErrorEvent(code=ErrorCode.SERVER_FULL.value, message=why))

    def _hello_expired(self) -> None:
        self._hello_timer = None
        if self.state in _BEFORE_HELLO:  # its timer is cancelled on leaving them anyway
            log.info("%s: no hello within %ss", self.conn, self.settings.hello_timeout)
            self.conn.close()

    def _watch_partial(self, partial: bool) -> None:
        """Start the frame clock when a frame or line begins; stop it when it ends."""
        if partial:
            if self._frame_timer is None and self.settings.frame_timeout > 0:
                self._frame_timer = self.loop.call_later(
                    self.settings.frame_timeout, self._frame_expired
                )
        elif self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    def _frame_expired(self) -> None:
        self._frame_timer = None
        log.info("%s: frame not finished within %ss", self.conn, self.settings.frame_timeout)
        if self.conn.kind is None:
            # Framed, but its first payload never came: without a kind it would
            # be closed without the `bye idle` the contract promises.
            self.conn.kind = ClientKind.JSON
        self.hub.drop(self.conn, "idle", "idle")

    def _fatal(self, error: ProtocolError) -> None:
        """A framing error: answer it and close (``bye`` too for an oversized frame)."""
        conn = self.conn
        if conn.kind is None:
            conn.kind = ClientKind.JSON
        self.hub.disconnect(conn, "protocol error")
        bye = "protocol_error" if error.code is ErrorCode.FRAME_TOO_LARGE else None
        conn.close(bye, ErrorEvent(code=error.code.value, message=error.message))

    def _register(self, hello: Hello) -> None:
        conn = self.conn
        try:
            self.hub.hello(conn, hello)
        except ProtocolError as exc:
            log.info("%s: hello refused: %s", conn, exc)
            conn.close(error=ErrorEvent(code=exc.code.value, message=exc.message, ref=hello.ref))
            return
        self._registered()
        log.info("%s: hello (%s)", conn, conn.kind.name.lower())

    # ------------------------------------------------------------------
    # Input

    def _on_unit(self, unit: bytes) -> float:
        """Handle one frame payload or one line; return how long to pause reading."""
        if self.state is not _REGISTERED:  # awaiting hello: no unit is read before sniffing
            self._before_hello(unit)
            # Before hello too: 10 000 requests answered `hello_required` in
            # 0.37 s were as cheap to send as they were dear to answer.
            return self._throttle() if self.settings.msg_rate > 0 else 0.0
        if not unit:
            return 0.0  # keepalive
        request = self._handle(unit)
        if request is _DEFERRED or self.settings.msg_rate <= 0:
            return 0.0
        price = _PRICES.get(type(request))
        return self._throttle(1.0 if price is None else price(request))

    def _handle(self, unit: bytes) -> Any:
        """Apply one request; return it (None if it could not be parsed)."""
        conn = self.conn
        request: Any = None
        try:
            if conn.kind is ClientKind.JSON:
                request = parse_request(unit, self.settings.max_text)
            else:
                request = parse_line(self._text(unit), self.settings.max_text)
                if request is None:
                    return None
            if conn.wait and type(request) not in _PIPELINED:
                # Answered now, it would overtake what is still at the log.
                self._pos -= 1
                self._defer = True
                return _DEFERRED
            handler = _DISPATCH.get(type(request))
            if handler is not None:
                handler(self.hub, conn, request)
                if conn.wait:
                    self._pipelined = type(request) in _PIPELINED
            elif isinstance(request, ShowHelp):
                self.hub.send(conn, encode_lines(HELP_LINES, conn.kind))
            else:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "hello was already said")
        except ProtocolError as exc:
            if conn.wait:
                # Its error too waits for what is at the log (a refused
                # request changed nothing: it is simply handled again).
                self._pos -= 1
                self._defer = True
                return _DEFERRED
            ref = exc.ref if exc.ref is not None else getattr(request, "ref", None)
            self.hub.send_error(conn, exc.code, exc.message, ref)
        return request

    def _before_hello(self, unit: bytes) -> None:
        conn = self.conn
        if isinstance(self.decoder, LineDecoder):
            if not unit.strip():
                return  # blank lines (telnet's stray CR LF) before the name
            conn.kind = ClientKind.LINE_CRLF if self.decoder.saw_crlf else ClientKind.LINE_LF
            self._plain_hello(unit)
            return
        if not unit:
            return
        if not is_json_payload(unit):
            conn.kind = ClientKind.TEXT_FRAME
            self._plain_hello(unit)
            return
        conn.kind = ClientKind.JSON
        kind = None
        try:
            kind = decode_json_object(unit)["type"]
            request = parse_request(unit, self.settings.max_text)
        except ProtocolError as exc:
            error = ErrorEvent(code=exc.code.value, message=exc.message, ref=exc.ref)
            if kind == "hello":
                conn.close(error=error)  # a hello with a bad field is a refused hello
            else:
                self.hub.send_event(conn, error)
            return
        if not isinstance(request, Hello):
            self.hub.send_error(
                conn, ErrorCode.HELLO_REQUIRED, "say hello first", getattr(request, "ref", None)
            )
            return
        if not self._password_ok and not self._check_password(request.password):
            self._refuse_password(request.ref)
            return
        self._register(request)

    def _check_password(self, given: str | None) -> bool:
        password = self.settings.password
        if password is None:
            return True
        # Constant time: how much of a guess is right must not show in the timing.
        self._password_ok = given is not None and hmac.compare_digest(
            given.encode(), password.encode()
        )
        return self._password_ok

    def _refuse_password(self, ref: Ref = None) -> None:
        """``bad_password`` and close, after a delay that slows guessing down.

        Only this connection waits (its reading paused); never the password in the log.
        """
        conn = self.conn
        log.info("%s: wrong or missing password", conn)
        self._denied()
        self._held = True
        conn.transport.pause_reading()
        error = ErrorEvent(
            code=ErrorCode.BAD_PASSWORD.value, message="wrong or missing password", ref=ref
        )
        self._resume_timer = self.loop.call_later(
            self.settings.password_delay, lambda: conn.close(error=error)
        )

    def _plain_hello(self, unit: bytes) -> None:
        """A plain-text or line client's first line is its name (after ``PASS secret``
        when the server has a password)."""
        try:
            text = self._text(unit).strip()
        except ProtocolError as exc:
            self.conn.close(error=ErrorEvent(code=exc.code.value, message=exc.message))
            return
        if text.startswith("PASS ") or text == "PASS":
            if not self._check_password(text[5:]):
                self._refuse_password()
            return  # the name comes next
        if not self._password_ok:
            self._refuse_password()
            return
        try:
            name = check_name(text)
        except ProtocolError as exc:
            self.conn.close(error=ErrorEvent(code=exc.code.value, message=exc.message))
            return
        self._register(Hello(name=name))

    @staticmethod
    def _text(unit: bytes) -> str:
        try:
            return unit.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.BAD_UTF8, "input is not valid UTF-8") from None

    def _throttle(self, cost: float = 1.0) -> float:
        """Token bucket: the seconds until this client is back within its rate."""
        now = self.loop.time()
        rate = self.settings.msg_rate
        tokens = min(self.settings.msg_burst, self._tokens + (now - self._last) * rate) - cost
        self._last = now
        self._tokens = tokens
        return -tokens / rate if tokens < 0 else 0.0
