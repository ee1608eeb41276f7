"""The full-screen prompt_toolkit app: tab bar, message pane, member list, status bar, input.

Modelled on prompt_toolkit's examples/full-screen: one Application, a layout
of Windows, a single-line TextArea with history and completion. Network work
runs as background tasks of the app; every event updates the ChatState model
(state.py) and asks for a redraw. Drawing is render.py's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import replace
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (
    ConditionalContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    VSplit,
    Window,
)
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from chatserver.commands import ShowHelp, parse_line
from chatserver.protocol import (
    DEFAULT_MAX_TEXT,
    Dm,
    Event,
    History,
    Join,
    JoinEvent,
    Leave,
    ProtocolError,
    Quit,
    Request,
    Say,
    Who,
    check_name,
)
from chatserver.render import escape

from .render import line_fragments
from .session import (
    ConnectError,
    ConnectionLost,
    HelloRefused,
    Session,
    SessionConfig,
    Status,
    format_address,
)
from .settings import TuiSettings
from .state import ChatState, Kind, dm_key

STYLE = Style.from_dict(
    {
        "tabbar": "bg:#303030 #bcbcbc",
        "tab.current": "bg:#5f87af #ffffff bold",
        "tab.unread": "#ffd75f bold",
        "tab.mention": "#ff5f5f bold",
        "status": "bg:#303030 #bcbcbc",
        "status.online": "#87d787 bold",
        "status.offline": "#ff5f5f bold",
        "status.ask": "bg:#d7af00 #000000 bold",
        "clock": "#808080",
        "punct": "#808080",
        "own-nick": "bold #ffffff underline",
        "own": "#d0d0d0",
        "mention": "bg:#5f0000 #ffffff bold",
        "action": "italic",
        "system": "#808080",
        "error": "#ff5f5f bold",
        "gap": "#d7af00",
        "members": "#bcbcbc",
        "members.title": "bold underline",
        "prompt": "bold",
    }
)
RENDERED_LINES = 800  # lines above the view position drawn per frame


class ChatCompleter(Completer):
    """Nicks of the current room (then others), and /commands at the start of a line."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Any:
        before = document.text_before_cursor
        word = before.rsplit(" ", 1)[-1]
        for candidate in self.state.completions(before):
            yield Completion(candidate, start_position=-len(word))


class MessageControl(FormattedTextControl):
    """The message pane: the mouse wheel scrolls our own model, not the window."""

    def __init__(self, chat: ChatApp) -> None:
        super().__init__(chat.message_fragments, focusable=False, show_cursor=False)
        self.chat = chat

    def mouse_handler(self, mouse_event: MouseEvent) -> Any:
        if mouse_event.event_type is MouseEventType.SCROLL_UP:
            self.chat.scroll(3)
            return None
        if mouse_event.event_type is MouseEventType.SCROLL_DOWN:
            self.chat.scroll(-3)
            return None
        return NotImplemented


class ChatApp:
    def __init__(
        self,
        config: SessionConfig,
        settings: TuiSettings | None = None,
        *,
        input: Input | None = None,
        output: Output | None = None,
    ) -> None:
        self.settings = settings or TuiSettings()
        self.state = ChatState(config.name, format_address(*config.endpoints[0]))
        self.session = Session(config, self.on_event, self.on_status)
        self.bell = self.settings.bell
        self.show_members = True
        self.pending_paste: list[str] = []
        self.switch_on_join: set[str] = set()
        self.message_window: Window | None = None
        self.input = TextArea(
            height=1,
            prompt=self._prompt,
            multiline=False,
            wrap_lines=False,
            history=InMemoryHistory(),
            completer=ChatCompleter(self.state),
            complete_while_typing=False,
            accept_handler=self._accept,
            style="class:input",
        )
        self.app: Application[int] = Application(
            layout=self._layout(),
            key_bindings=self._bindings(),
            style=STYLE,
            full_screen=True,
            mouse_support=True,
            input=input,
            output=output,
        )

    # ------------------------------------------------------------- layout

    def _layout(self) -> Layout:
        self.message_window = Window(
            MessageControl(self),
            wrap_lines=True,
            get_line_prefix=lambda lineno, wrap_count: "      " if wrap_count else "",
        )
        members = ConditionalContainer(
            VSplit(
                [
                    Window(width=1, char="│", style="class:members"),
                    Window(FormattedTextControl(self.member_fragments), width=18),
                ]
            ),
            filter=Condition(lambda: self.show_members),
        )
        return Layout(
            HSplit(
                [
                    Window(
                        FormattedTextControl(self.tab_fragments), height=1, style="class:tabbar"
                    ),
                    VSplit([self.message_window, members]),
                    Window(
                        FormattedTextControl(self.status_fragments), height=1, style="class:status"
                    ),
                    self.input,
                ]
            ),
            focused_element=self.input,
        )

    def _prompt(self) -> StyleAndTextTuples:
        pane = self.state.current_pane
        title = escape(pane.title) if pane else ""
        return [("class:prompt", f"[{title}] ")]

    def tab_fragments(self) -> StyleAndTextTuples:
        out: StyleAndTextTuples = []
        for i, key in enumerate(self.state.order(), start=1):
            pane = self.state.panes[key]
            label = f" {i}:{escape(pane.title)}"
            if key == self.state.current:
                out.append(("class:tab.current", label + " "))
                continue
            out.append(("", label))
            if pane.unread:
                style = "class:tab.mention" if pane.mentioned else "class:tab.unread"
                out.append((style, f"({pane.unread}{'!' if pane.mentioned else ''})"))
            out.append(("", " "))
        return out

    def member_fragments(self) -> StyleAndTextTuples:
        pane = self.state.current_pane
        if pane is None or pane.is_dm:
            return [("class:members.title", "direct\n")]
        names = pane.member_names()
        out: StyleAndTextTuples = [("class:members.title", f"{len(names)} here\n")]
        for name in names:
            style = "class:own-nick" if self.state.is_me(name) else "class:members"
            out.append((style, escape(name)[:17] + "\n"))
        return out

    def status_fragments(self) -> StyleAndTextTuples:
        state = self.state
        if self.pending_paste:
            n = len(self.pending_paste)
            return [("class:status.ask", f" Send the pasted {n} lines as {n} messages? [y/N] ")]
        online = state.status == "online"
        lag = self.session.latency
        pane = state.current_pane
        parts: StyleAndTextTuples = [
            ("class:status.online" if online else "class:status.offline", f" [{state.status}]"),
            ("", f" {escape(state.server)} │ {escape(pane.title) if pane else '-'}"),
            ("", f" │ {escape(state.me)}"),
            ("", f" │ lag {lag * 1000:.0f} ms" if lag is not None else ""),
        ]
        if pane is not None and pane.scroll:
            parts.append(("class:status.ask", f" ↑ {pane.scroll} more below (End) "))
        return parts

    def message_fragments(self) -> StyleAndTextTuples:
        pane = self.state.current_pane
        if pane is None:
            return [("class:system", "no room open: /join ROOM")]
        lines = pane.lines
        pane.scroll = max(0, min(pane.scroll, len(lines) - 1))
        view = len(lines) - 1 - pane.scroll  # the line kept in sight
        start = max(0, view - RENDERED_LINES)
        out: StyleAndTextTuples = []
        info = self.message_window.render_info if self.message_window else None
        if info is not None and len(lines) < info.window_height:
            # Few lines: keep them at the bottom, next to the input, as irssi does.
            out.append(("", "\n" * (info.window_height - len(lines))))
        for index in range(start, len(lines)):
            if index == view and pane.scroll:
                out.append(("[SetCursorPosition]", ""))
            out.extend(line_fragments(lines[index]))
            if index == view and not pane.scroll:
                out.append(("[SetCursorPosition]", ""))  # the end: wrapped rows stay in sight
            if index != len(lines) - 1:
                out.append(("", "\n"))
        return out

    # ------------------------------------------------------------- keys

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()
        asking = Condition(lambda: bool(self.pending_paste))

        for digit in range(1, 10):

            @kb.add("escape", str(digit))
            def _switch(event: KeyPressEvent, index: int = digit - 1) -> None:
                self.state.switch_index(index)

        @kb.add("c-n")
        def _next(event: KeyPressEvent) -> None:
            self.state.switch_relative(1)

        @kb.add("c-p")
        def _prev(event: KeyPressEvent) -> None:
            self.state.switch_relative(-1)

        @kb.add("pageup")
        def _page_up(event: KeyPressEvent) -> None:
            self.scroll(self._page())

        @kb.add("pagedown")
        def _page_down(event: KeyPressEvent) -> None:
            self.scroll(-self._page())

        @kb.add("end")
        def _live(event: KeyPressEvent) -> None:
            pane = self.state.current_pane
            if pane is not None:
                pane.scroll = 0

        @kb.add("f2")
        def _members(event: KeyPressEvent) -> None:
            self.show_members = not self.show_members

        @kb.add("c-c")
        @kb.add("c-d", filter=Condition(lambda: not self.input.text))
        def _quit(event: KeyPressEvent) -> None:
            self.quit()

        @kb.add(Keys.BracketedPaste)
        def _paste(event: KeyPressEvent) -> None:
            text = event.data.replace("\r\n", "\n").replace("\r", "\n")
            lines = [line for line in text.split("\n") if line.strip()]
            if len(lines) > 1:
                self.pending_paste = lines
            else:
                self.input.buffer.insert_text(text.strip("\n"))

        @kb.add("y", filter=asking, eager=True)
        @kb.add("Y", filter=asking, eager=True)
        def _paste_yes(event: KeyPressEvent) -> None:
            lines, self.pending_paste = self.pending_paste, []
            for line in lines:
                self.handle_input(line)

        @kb.add("<any>", filter=asking)
        def _paste_no(event: KeyPressEvent) -> None:
            self.pending_paste = []

        return kb

    def _page(self) -> int:
        info = self.message_window.render_info if self.message_window else None
        return max(1, (info.window_height if info else 20) - 2)

    def scroll(self, lines: int) -> None:
        pane = self.state.current_pane
        if pane is not None:
            pane.scroll = max(0, min(len(pane.lines) - 1, pane.scroll + lines))
            self.app.invalidate()

    # ------------------------------------------------------------- input

    def _accept(self, buffer: Any) -> bool:
        self.handle_input(buffer.text)
        return False  # clear the line (it is kept in the history)

    def handle_input(self, line: str) -> None:
        state = self.state
        pane = state.current_pane
        word, _, rest = line.partition(" ")
        command = word[1:].lower() if line.startswith("/") and not line.startswith("//") else ""
        if command == "clear":
            if pane is not None:
                pane.lines.clear()
                pane.scroll = 0
            return
        if command == "close":
            if pane is not None and pane.is_dm:
                state.close(pane.key)
            elif pane is not None:
                self.send(Leave(room=pane.key))
            return
        if command in ("query", "q") and rest.strip() and " " not in rest.strip():
            try:
                name = check_name(rest.strip())
            except ProtocolError as exc:
                state.note(exc.message, Kind.ERROR)
                return
            state.open_dm(name)
            state.switch(dm_key(name))
            return
        welcome = self.session.welcome
        max_text = (welcome.limits.get("max_text") if welcome else None) or DEFAULT_MAX_TEXT
        try:
            request = parse_line(line, max_text)
        except ProtocolError as exc:
            state.note(exc.message, Kind.ERROR)
            return
        if request is None:
            return
        if isinstance(request, ShowHelp):
            for help_line in state.help_lines():
                state.note(help_line)
            return
        if isinstance(request, Quit):
            self.quit(request.reason)
            return
        request = self._aim(request)
        if request is not None:
            self.send(request)

    def _aim(self, request: Request) -> Request | None:
        """Point a request at the current pane when the line did not name a room."""
        pane = self.state.current_pane
        if isinstance(request, Say):
            if pane is None:
                self.state.note("you are in no room: /join one first", Kind.ERROR)
                return None
            if pane.is_dm:
                return Dm(to=pane.title, text=request.text, action=request.action)
            return replace(request, room=pane.key)
        if pane is None or pane.is_dm:
            if isinstance(request, Leave) and request.room is None and pane is not None:
                self.state.close(pane.key)
                return None
            return request
        if isinstance(request, Leave | Who | History) and request.room is None:
            return replace(request, room=pane.key)
        if isinstance(request, Join):
            self.switch_on_join.add(request.room)
        return request

    def send(self, request: Request) -> None:
        self.session.send(request)
        if self.session.status is not Status.ONLINE:
            self.state.note("offline: sent when the connection is back")

    def quit(self, reason: str | None = None) -> None:
        async def bye() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.quit(reason), 2)
            self.app.exit(result=0)

        self.app.create_background_task(bye())

    # ------------------------------------------------------------- network

    def on_event(self, event: Event) -> None:
        if isinstance(event, JoinEvent) and self.state.is_me(event.name):
            # Our join (also after a reconnect): fetch the member list quietly.
            self.state.quiet_refs.add(self.session.send(Who(room=event.room)))
        self.state.apply(event)
        me = isinstance(event, JoinEvent) and self.state.is_me(event.name)
        if me and event.room in self.switch_on_join:
            self.switch_on_join.discard(event.room)
            self.state.switch(event.room)
        if self.state.bell_pending:
            self.state.bell_pending = False
            if self.bell and self.app.is_running:
                self.app.output.bell()
        self.app.invalidate()

    def on_status(self, status: Status, detail: str) -> None:
        if detail != "pong":
            self.state.connection(status.value, detail)
        self.app.invalidate()

    async def _network(self) -> None:
        try:
            reason = await self.session.run()
        except ConnectionLost as exc:
            reason = str(exc)
        if reason != "quit":
            self.state.note(f"disconnected ({reason}); /quit to leave", Kind.ERROR)
        self.state.status = "closed"
        self.app.invalidate()

    async def run(self) -> int:
        """Connect, then run the app until /quit; the exit status."""
        try:
            await self.session.start()
        except ConnectError as exc:
            print(f"chatclient: {exc}", file=sys.stderr)
            return 1
        except HelloRefused as exc:
            print(f"chatclient: refused by the server: {exc.message} ({exc.code})", file=sys.stderr)
            return 3
        if self.session.skipped:  # the first servers listed did not take us
            self.state.note(f"{'; '.join(self.session.skipped)}; connected to {self.state.server}")
        self.app.create_background_task(self._network())
        self.app.create_background_task(self.session.keepalive())
        self.app.create_background_task(self._first_ping())
        try:
            result = await self.app.run_async()
        finally:
            self.session.close()
        return result or 0

    async def _first_ping(self) -> None:
        self.session.ping()  # the status bar shows a latency from the start


def _bar(get_fragments: Any, style: str) -> Window:
    return Window(FormattedTextControl(get_fragments), height=1, style=style)


def run_tui(config: SessionConfig, settings: TuiSettings) -> int:
    try:
        return asyncio.run(ChatApp(config, settings).run())
    except KeyboardInterrupt:
        return 130


__all__ = ["ChatApp", "ChatCompleter", "run_tui"]
