"""Script mode: input lines from stdin (or ``--send``), events to stdout; no prompt_toolkit.

Each line means what it means to a line-mode client (``chatserver.commands``);
each event is printed in the contract's rendered form or, with ``--json``, as
one JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from chatserver.commands import HELP_LINES, ShowHelp, parse_line
from chatserver.protocol import (
    DEFAULT_MAX_TEXT,
    ErrorEvent,
    Event,
    History,
    HistoryReply,
    ProtocolError,
    Quit,
    Ref,
    to_obj,
)
from chatserver.render import escape, render

from .session import ConnectError, ConnectionLost, HelloRefused, Session, SessionConfig, Status

# Exit statuses (also listed in --help and docs/client.md).
EXIT_OK = 0
EXIT_CONNECT = 1  # could not connect, or the server closed before welcome
EXIT_USAGE = 2
EXIT_REFUSED = 3  # hello refused: name_taken, bad_name, bad_password, server_full
EXIT_LOST = 4  # the connection dropped before the work was done (not with --listen)
EXIT_FAILED = 5  # some input line was refused: bad usage, or an error reply to it
EXIT_INTERRUPTED = 130


class ScriptClient:
    def __init__(
        self,
        config: SessionConfig,
        *,
        json_out: bool = False,
        listen: bool = False,
        quiet: bool = False,
        no_backlog: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.json_out = json_out
        self.listen = listen
        self.quiet = quiet
        self.no_backlog = no_backlog
        self.history_refs: set[Ref] = set()  # our /history lines: always printed
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.failed = False
        self.sent: set[Ref] = set()
        self.session = Session(config, self.on_event, self.on_status)
        self._was_online = False
        self._stdout_closed = False

    # ---------------------------------------------------------------- output

    def write(self, line: str) -> None:
        if self._stdout_closed:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()  # one line at a time: readers in a pipe see each event now
        except BrokenPipeError:
            self._stdout_closed = True

    def warn(self, text: str) -> None:
        print(f"chatclient: {text}", file=self.err, flush=True)

    def on_event(self, event: Event) -> None:
        if isinstance(event, ErrorEvent) and event.ref is not None and event.ref in self.sent:
            self.failed = True
        if self.quiet and not isinstance(event, ErrorEvent):
            return
        if self.no_backlog and isinstance(event, HistoryReply) and self._is_backlog(event):
            return
        if self.json_out:
            self.write(json.dumps(to_obj(event), ensure_ascii=False))
        else:
            for line in render(event, self.session.name):
                self.write(line)

    def _is_backlog(self, event: HistoryReply) -> bool:
        """Recent history sent on joining, as opposed to missed messages or a /history."""
        if event.ref is None:
            return not self.session.resumed
        return event.ref not in self.history_refs and event.ref not in self.session.resume_refs

    def on_status(self, status: Status, detail: str) -> None:
        if status is Status.OFFLINE:
            self.warn(f"connection lost ({escape(detail)})")
        elif status is Status.ONLINE and detail != "pong":
            # One line when we come back, or when we are not where we first tried.
            if self._was_online:
                self.warn(f"reconnected to {escape(detail)}")
            elif self.session.skipped:
                self.warn(escape(f"{'; '.join(self.session.skipped)}; connected to {detail}"))
            self._was_online = True

    # ---------------------------------------------------------------- input

    def handle_line(self, line: str) -> bool:
        """Send one input line; False when it was ``/quit``."""
        welcome = self.session.welcome
        max_text = (welcome.limits.get("max_text") if welcome else None) or DEFAULT_MAX_TEXT
        try:
            request = parse_line(line, max_text)
        except ProtocolError as exc:
            self.failed = True
            self.warn(f"{exc.code}: {exc.message} (in {line[:60]!r})")
            return True
        if request is None:
            return True
        if isinstance(request, ShowHelp):
            if not self.json_out and not self.quiet:
                for help_line in HELP_LINES:
                    self.write(help_line)
            return True
        if isinstance(request, Quit):
            return False
        ref = self.session.send(request)
        self.sent.add(ref)
        if isinstance(request, History):
            self.history_refs.add(ref)
        return True

    async def run(self, lines: Iterable[str] | None) -> int:
        """Connect, send the lines (None: read stdin), wait for the answers, quit."""
        try:
            await self.session.start()
        except ConnectError as exc:
            self.warn(str(exc))
            return EXIT_CONNECT
        except HelloRefused as exc:
            self.warn(f"refused by the server: {exc.message} ({exc.code})")
            return EXIT_REFUSED
        reader = asyncio.create_task(self.session.run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            return await self._work(lines, reader, stop)
        finally:
            self.session.close()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _work(
        self, lines: Iterable[str] | None, reader: asyncio.Task[str], stop: asyncio.Event
    ) -> int:
        source = _stdin_lines() if lines is None else _iter_lines(lines)
        quitting = False
        while True:
            line = await _first(source.get(), reader, stop)
            if reader.done():
                return self._lost(reader)
            if stop.is_set():
                return await self._finish(EXIT_OK if self.listen else EXIT_INTERRUPTED)
            if line is None:  # end of input
                break
            if not self.handle_line(line.rstrip("\r\n")):
                quitting = True
                break
        if self.listen and not quitting:
            await _first(reader, stop)
            if reader.done():
                return self._lost(reader)
            return await self._finish(EXIT_OK)
        # Every line is sent; the pong to one more ping comes after all their answers.
        barrier = self.session.barrier()
        await _first(barrier, reader, stop)
        if not barrier.done():
            if reader.done():
                return self._lost(reader)
            return await self._finish(EXIT_INTERRUPTED)
        return await self._finish(EXIT_FAILED if self.failed else EXIT_OK)

    async def _finish(self, code: int) -> int:
        self._stdout_closed = True  # done: the answer to our quit is not news
        await self.session.quit()
        return code

    def _lost(self, reader: asyncio.Task[str]) -> int:
        exc = reader.exception() if not reader.cancelled() else None
        if isinstance(exc, ConnectionLost):
            self.warn(f"connection lost ({exc})")
            return EXIT_LOST
        if exc is not None:
            self.warn(f"connection lost ({exc})")
            return EXIT_LOST
        reason = reader.result()
        if reason == "quit":
            return EXIT_FAILED if self.failed else EXIT_OK
        self.warn(f"the server closed the session ({reason})")
        return EXIT_LOST


class _Lines:
    """An async source of input lines; None at the end."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def get(self) -> str | None:
        return await self.queue.get()


def _iter_lines(lines: Iterable[str]) -> _Lines:
    source = _Lines()
    for line in lines:
        source.queue.put_nowait(line)
    source.queue.put_nowait(None)
    return source


def _stdin_lines() -> _Lines:
    """Read stdin in a daemon thread: works for pipes, files and terminals alike."""
    source = _Lines()
    loop = asyncio.get_running_loop()

    def pump() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(source.queue.put_nowait, line)
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(source.queue.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return source


async def _first(*waitables: object) -> object:
    """Wait until the first of coroutines/futures/events is done; return a coroutine's value.

    Futures and tasks passed in are left running; only the helper tasks made
    here are cancelled.
    """
    made: list[asyncio.Future[object]] = []
    futures: list[asyncio.Future[object]] = []
    for item in waitables:
        if isinstance(item, asyncio.Event):
            fut: asyncio.Future[object] = asyncio.ensure_future(item.wait())
            made.append(fut)
        elif asyncio.isfuture(item):
            fut = item  # type: ignore[assignment]
        else:
            fut = asyncio.ensure_future(item)  # type: ignore[arg-type]
            made.append(fut)
        futures.append(fut)
    try:
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in made:
            if not fut.done():
                fut.cancel()
    first = futures[0]
    if first in done and first in made and not first.cancelled():
        return first.result()
    return None


def run_script(
    config: SessionConfig,
    *,
    lines: Iterable[str] | None = None,
    json_out: bool = False,
    listen: bool = False,
    quiet: bool = False,
    no_backlog: bool = False,
) -> int:
    client = ScriptClient(
        config, json_out=json_out, listen=listen, quiet=quiet, no_backlog=no_backlog
    )
    try:
        return asyncio.run(client.run(lines))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
