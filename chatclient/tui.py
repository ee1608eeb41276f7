"""The full-screen prompt_toolkit app: tab bar, message pane, member list, status bar, input.

One Application, a layout of Windows, an input line that grows with its text.
Network work runs as background tasks of the app; every event updates the
ChatState model (state.py) and asks for a redraw. The message area draws
only what is visible (view.py); the bars are bars.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import replace
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition, to_filter
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import History as InputHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (
    ConditionalContainer,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    UIContent,
    UIControl,
    VSplit,
    Window,
)
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from chatserver.commands import ShowHelp, parse_line
from chatserver.protocol import (
    DEFAULT_MAX_TEXT,
    Dm,
    ErrorEvent,
    Event,
    History,
    HistoryReply,
    Join,
    JoinEvent,
    Leave,
    LeaveEvent,
    MsgEvent,
    ProtocolError,
    Quit,
    Request,
    Say,
    Who,
    check_name,
)
from chatserver.render import escape

from . import bars
from .history import ChatHistory
from .logs import PaneLogs
from .notify import Notifier
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
from .split import split_text
from .state import ChatState, Kind, Line, dm_key
from .view import PaneView, notes_frame

STYLE = {
    "tabbar": "bg:#303030 #bcbcbc",
    "tab.current": "bg:#5f87af #ffffff bold",
    "tab.unread": "#ffd75f bold",
    "tab.mention": "#ff5f5f bold",
    "tab.quiet": "#8a8a8a",
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
    "marker": "#ff5f5f",
    "day": "#5f87af",
    "found": "reverse",
    "members": "#bcbcbc",
    "members.title": "bold underline",
    "prompt": "bold",
}
HISTORY_PAGE = 100  # messages fetched when scrolling up past the top
HOLE_PAGE = 500  # messages per page when filling what a cut resume left out
INPUT_ROWS = 6  # the input line grows to this many rows for long text
QUIT_WINDOW = 2.0  # seconds for the second Ctrl-C on an empty line
FLASH_SECONDS = 3.0
REDRAW_INTERVAL = 1 / 60  # keys: at most this many frames a second (others: LIVE_REDRAW)
WHEEL_ROWS = 3
TYPING_SECONDS = 60.0  # typed this recently in the pane shown: its mentions need no pop-up
LIVE_REDRAW = 0.15  # others' lines in the pane shown: under seven frames a second
BACKGROUND_REDRAW = 0.25  # news in panes not shown: the tab bar catches up this often


class ChatCompleter(Completer):
    """Nicks (recent speakers first) and /commands, from the model."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Any:
        before = document.text_before_cursor
        word = before.rsplit(" ", 1)[-1]
        for candidate in self.state.completions(before):
            yield Completion(candidate, start_position=-len(word), display=candidate.rstrip())


class MessageControl(UIControl):
    """The message area: asks the view for exactly the rows that fit."""

    def __init__(self, chat: ChatApp) -> None:
        self.chat = chat
        self.width = 80
        self.height = 20

    def is_focusable(self) -> bool:
        return False

    def create_content(self, width: int, height: int | None) -> UIContent:
        self.width, self.height = width, height or self.height
        rows = self.chat.frame_rows(self.width, self.height)
        return UIContent(get_line=rows.__getitem__, line_count=len(rows), show_cursor=False)

    def mouse_handler(self, mouse_event: MouseEvent) -> Any:
        if mouse_event.event_type is MouseEventType.SCROLL_UP:
            self.chat.scroll(WHEEL_ROWS)
            return None
        if mouse_event.event_type is MouseEventType.SCROLL_DOWN:
            self.chat.scroll(-WHEEL_ROWS)
            return None
        return NotImplemented


class MemberControl(UIControl):
    def __init__(self, chat: ChatApp) -> None:
        self.chat = chat
        self.height = 20

    def is_focusable(self) -> bool:
        return False

    def create_content(self, width: int, height: int | None) -> UIContent:
        self.height = height or self.height
        chat = self.chat
        pane = chat.state.current_pane
        total = len(pane.members) if pane is not None else 0
        chat.member_offset = max(0, min(chat.member_offset, total - (self.height - 2)))
        fragments = bars.member_fragments(chat.state, width, self.height, chat.member_offset)
        control = FormattedTextControl(fragments)
        return control.create_content(width, height)

    def mouse_handler(self, mouse_event: MouseEvent) -> Any:
        if mouse_event.event_type is MouseEventType.SCROLL_UP:
            self.chat.scroll_members(-WHEEL_ROWS)
            return None
        if mouse_event.event_type is MouseEventType.SCROLL_DOWN:
            self.chat.scroll_members(WHEEL_ROWS)
            return None
        return NotImplemented


class ChatApp:
    def __init__(
        self,
        config: SessionConfig,
        settings: TuiSettings | None = None,
        *,
        bell: bool | None = None,
        input: Input | None = None,
        output: Output | None = None,
        history: InputHistory | None = None,
    ) -> None:
        self.settings = settings = settings or TuiSettings()
        if bell is not None:
            self.settings = settings = replace(settings, bell=bell)
        self.state = ChatState(
            config.name,
            format_address(*config.endpoints[0]),
            highlight=settings.highlight,
            scrollback=settings.scrollback,
            smart_filter=settings.smart_filter,
            smart_filter_minutes=settings.smart_filter_minutes,
        )
        self.session = Session(config, self.on_event, self.on_status)
        self.view = PaneView(self.state)
        # Logs are named after the first server given, not the node answering, so
        # a cluster's processes share one set of files.
        self.logs: PaneLogs | None = None
        if settings.logs:
            logs = self.logs = PaneLogs(
                settings.log_dir, format_address(*config.endpoints[0]), on_error=self.error_note
            )
            self.state.on_line = lambda pane, line: logs.log(pane.key, pane.title, line)
        self.notifier = Notifier(settings, self._write_raw, on_error=self.error_note)
        self.last_typed = -1e9
        self.show_members = settings.members
        self.mouse = settings.mouse
        self.member_offset = 0
        self.pending: list[str] = []  # lines waiting for a yes
        self.question = ""
        self.switch_on_join: set[str] = set()
        self.fetch_refs: dict[object, str] = {}  # older-history requests -> room
        self.hole_refs: dict[object, int] = {}  # pages of a cut resume -> the id they go back to
        self.flash_text = ""
        self.flash_until = 0.0
        self.last_ctrl_c = 0.0
        self.quitting = False
        self.searching = False
        self.search_saved = ""  # the input line put aside while searching
        # Where a search started: the pane, the line at the bottom (None: live), its rows hidden.
        self.search_from: tuple[str, Line | None, int] = ("", None, 0)
        self.found: object = None  # the line the search found: drawn reversed
        self._redraw_due: float | None = None
        self._redraw_timer: asyncio.TimerHandle | None = None
        self.messages = MessageControl(self)
        self.members_control = MemberControl(self)
        self.input = TextArea(
            prompt=self._prompt,
            multiline=False,
            wrap_lines=True,
            history=history
            or ChatHistory(settings.history_file, settings.history_size, on_error=self.error_note),
            completer=ChatCompleter(self.state),
            complete_while_typing=False,
            accept_handler=self._accept,
            style="class:input",
        )
        # One logical line (Enter sends), drawn on as many rows as it needs up to
        # INPUT_ROWS: TextArea makes a single-line input one row high.
        self.input.window.height = Dimension(min=1, max=INPUT_ROWS)
        self.input.window.dont_extend_height = to_filter(True)
        self.input.buffer.on_text_changed += self._typed
        self.app: Application[int] = Application(
            layout=self._layout(),
            key_bindings=self._bindings(),
            style=Style.from_dict({**STYLE, **settings.colours}),
            full_screen=True,
            mouse_support=Condition(lambda: self.mouse),
            min_redraw_interval=REDRAW_INTERVAL,
            input=input,
            output=output,
        )

    # ------------------------------------------------------------- layout

    def _layout(self) -> Layout:
        members = ConditionalContainer(
            VSplit(
                [
                    Window(width=1, char="│", style="class:members"),
                    Window(self.members_control, width=self._member_width),
                ]
            ),
            filter=Condition(lambda: self.show_members and self._member_width() > 0),
        )
        body = HSplit(
            [
                Window(FormattedTextControl(self.tab_fragments), height=1, style="class:tabbar"),
                VSplit([Window(self.messages), members]),
                Window(FormattedTextControl(self.status_fragments), height=1, style="class:status"),
                self.input,
            ]
        )
        menu = Float(xcursor=True, ycursor=True, content=CompletionsMenu(max_height=8))
        return Layout(FloatContainer(body, floats=[menu]), focused_element=self.input)

    def _columns(self) -> int:
        try:
            return self.app.output.get_size().columns
        except Exception:  # no terminal (tests)
            return 100

    def _member_width(self) -> int:
        return bars.member_width(self.state, self._columns())

    def _prompt(self) -> StyleAndTextTuples:
        if self.searching:
            return [("class:status.ask", "(find)"), ("", " ")]
        pane = self.state.current_pane
        if pane is None:
            return [("class:prompt", "[-] ")]
        title = ("@" if pane.is_dm else "") + escape(pane.title)
        return [("class:prompt", f"[{title}] ")]

    def tab_fragments(self) -> StyleAndTextTuples:
        return bars.tab_fragments(self.state, self._columns())  # type: ignore[return-value]

    def status_fragments(self) -> StyleAndTextTuples:
        state = self.state
        if self.pending:
            return [("class:status.ask", f" {self.question} [y/N] ")]
        online = state.status == "online"
        lag = self.session.latency
        pane = state.current_pane
        where = "-"
        if pane is not None:
            where = ("@" if pane.is_dm else "") + escape(pane.title)
            if not pane.is_dm:
                where += f" ({pane.member_count()}{', big' if pane.quiet else ''})"
        parts: StyleAndTextTuples = [
            ("class:status.online" if online else "class:status.offline", f" [{state.status}]"),
            ("", f" {escape(state.server)} │ {where} │ {escape(state.me)}"),
        ]
        if online and lag is not None:
            parts.append(("", f" │ lag {lag * 1000:.0f} ms"))
        elif state.status == "offline" and state.detail:
            when = state.detail.rsplit("; ", 1)[-1]  # "retrying in 2.0 s"; the panes say why
            parts.append(("", f" │ {escape(when)} (/reconnect)"))
        parts.extend(bars.activity_fragments(state))  # type: ignore[arg-type]
        if not state.smart_filter:
            parts.append(("", " │ filter off"))
        if pane is not None and pane.anchor is not None:
            below = pane.anchor[0]
            more = f"{below} more below" if below else "scrolled back"
            parts.append(("class:status.ask", f" ↑ {more} (Alt-End) "))
        if self.flash_text and time.monotonic() < self.flash_until:
            parts.append(("class:status.ask", f" {self.flash_text} "))
        return parts

    def frame_rows(self, width: int, height: int) -> list[StyleAndTextTuples]:
        pane = self.state.current_pane
        if pane is None:
            return notes_frame(list(self.state.notes), self.view, width, height).rows  # type: ignore[return-value]
        frame = self.view.frame(pane, width, height)
        if self.found is not None:
            found = self.found
            # The found line's rows are marked reversed; cached rows stay plain.
            rows = self.view.rows_of(found, width)  # type: ignore[arg-type]
            marked = {id(r) for r in rows}
            frame.rows = [
                [("class:found " + s, t) for s, t in r] if id(r) in marked else r
                for r in frame.rows
            ]
        return frame.rows  # type: ignore[return-value]

    def flash(self, text: str) -> None:
        """A short note in the status bar, not in the pane."""
        self.flash_text = text
        self.flash_until = time.monotonic() + FLASH_SECONDS

        async def clear() -> None:
            await asyncio.sleep(FLASH_SECONDS)
            self.app.invalidate()

        if self.app.is_running:
            self.app.create_background_task(clear())

    # ------------------------------------------------------------- keys

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()
        keys = self.settings.keys
        asking = Condition(lambda: bool(self.pending))
        searching = Condition(lambda: self.searching)

        # prompt_toolkit's Emacs mode reads Alt-digit and Alt-- as a repeat
        # count, which silently eats the next key: nothing here wants that.
        for key in [*"0123456789", "-"]:

            @kb.add("escape", key)
            def _swallow(event: KeyPressEvent) -> None:
                pass

        def bind(action: str, handler: Any, **kwargs: Any) -> None:
            sequence = keys.get(action)
            if sequence:
                kb.add(*sequence, **kwargs)(handler)

        for number in range(1, 11):
            bind(f"pane_{number}", lambda e, i=number - 1: self.switch_index(i))
        jump = keys.get("pane_jump")
        if jump:
            for number in range(1, 100):
                tens, ones = divmod(number, 10)
                kb.add(*jump, str(tens), str(ones))(lambda e, i=number - 1: self.switch_index(i))
        bind("pane_next", lambda e: self.switch_to(self.state.switch_relative(1)))
        bind("pane_prev", lambda e: self.switch_to(self.state.switch_relative(-1)))
        bind("activity", lambda e: self.switch_to(self.state.switch_active()))
        bind("page_up", lambda e: self.scroll(self.view.page(self.messages.height)))
        bind("page_down", lambda e: self.scroll(-self.view.page(self.messages.height)))
        bind("scroll_top", lambda e: self.scroll_top())
        bind("scroll_live", lambda e: self.live())
        bind("members", lambda e: self.toggle_members())
        bind("members_up", lambda e: self.scroll_members(-(self.members_control.height - 2)))
        bind("members_down", lambda e: self.scroll_members(self.members_control.height - 2))
        bind("filter", lambda e: self.toggle_filter())
        bind("mouse", lambda e: self.toggle_mouse())
        bind("search", lambda e: self.search_next())

        @kb.add("tab")
        def _complete(event: KeyPressEvent) -> None:
            # WeeChat's way: the first candidate (the last speaker) at once, Tab again
            # for the next; the menu shows the others.
            buffer = self.input.buffer
            if buffer.complete_state:
                buffer.complete_next()
            else:
                buffer.start_completion(select_first=True)

        @kb.add("s-tab")
        def _complete_back(event: KeyPressEvent) -> None:
            buffer = self.input.buffer
            if buffer.complete_state:
                buffer.complete_previous()

        @kb.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            self.interrupt()

        @kb.add("escape", filter=searching, eager=True)
        def _search_cancel(event: KeyPressEvent) -> None:
            self.end_search(keep=False)

        @kb.add("c-d", filter=Condition(lambda: not self.input.text))
        def _quit(event: KeyPressEvent) -> None:
            self.quit()

        @kb.add(Keys.BracketedPaste)
        def _paste(event: KeyPressEvent) -> None:
            text = event.data.replace("\r\n", "\n").replace("\r", "\n")
            lines = [line for line in text.split("\n") if line.strip()]
            if len(lines) > 1:
                # Pasted lines are text, never commands (a pasted "/quit" is said), and
                # each is cut to what the server takes.
                limit = self.max_text()
                said = [self._plain(p) for line in lines for p in split_text(line, limit)]
                self.ask(f"Send the pasted {len(lines)} lines as {len(said)} messages?", said)
            else:
                self.input.buffer.insert_text(text.strip("\n"))

        @kb.add("y", filter=asking, eager=True)
        @kb.add("Y", filter=asking, eager=True)
        def _yes(event: KeyPressEvent) -> None:
            lines, self.pending = self.pending, []
            for line in lines:
                self.handle_input(line, confirmed=True)

        @kb.add("<any>", filter=asking)
        def _no(event: KeyPressEvent) -> None:
            self.pending = []
            self.flash("not sent")

        return kb

    def ask(self, question: str, lines: list[str]) -> None:
        self.question = question
        self.pending = lines

    def switch_index(self, index: int) -> None:
        self.switch_to(self.state.switch_index(index))

    def switch_to(self, switched: bool) -> None:
        if switched:
            if self.searching:
                self.end_search(keep=True)
            self.member_offset = 0
            self.found = None
        self.app.invalidate()

    def toggle_members(self) -> None:
        self.show_members = not self.show_members

    def toggle_filter(self) -> None:
        self.state.smart_filter = not self.state.smart_filter
        self.flash(f"join/leave filter {'on' if self.state.smart_filter else 'off'}")

    def toggle_mouse(self) -> None:
        self.mouse = not self.mouse
        self.flash("mouse on (wheel scrolls)" if self.mouse else "mouse off (select text)")

    def interrupt(self) -> None:
        """Ctrl-C: clear the line; on an empty line, a second one quits."""
        if self.searching:
            self.end_search(keep=False)
            return
        if self.pending:
            self.pending = []
            self.flash("not sent")
            return
        if self.input.text:
            self.input.buffer.reset()
            return
        now = time.monotonic()
        if now - self.last_ctrl_c < QUIT_WINDOW:
            self.quit()
            return
        self.last_ctrl_c = now
        self.flash("Ctrl-C again to quit (or /quit)")

    def scroll(self, rows: int) -> None:
        pane = self.state.current_pane
        if pane is None:
            return
        top = self.view.scroll(pane, rows, self.messages.width, self.messages.height)
        if top and rows > 0:
            self.fetch_older(pane.key)
        self.app.invalidate()

    def scroll_top(self) -> None:
        pane = self.state.current_pane
        if pane is not None:
            self.view.to_top(pane, self.messages.width, self.messages.height)
            self.fetch_older(pane.key)
        self.app.invalidate()

    def live(self) -> None:
        pane = self.state.current_pane
        if pane is not None:
            pane.anchor = None
        self.found = None
        self.app.invalidate()

    def scroll_members(self, rows: int) -> None:
        self.member_offset = max(0, self.member_offset + rows)
        self.app.invalidate()

    def fetch_older(self, key: str) -> None:
        """Ask the server for the page before the oldest message shown (once at a time)."""
        pane = self.state.panes.get(key)
        if pane is None or pane.is_dm or pane.fetching or not pane.more_before:
            return
        if self.session.status is not Status.ONLINE:
            return
        pane.fetching = True
        ref = self.session.send(History(room=key, before=pane.first_id(), limit=HISTORY_PAGE))
        self.fetch_refs[ref] = key
        self.state.asked_refs.add(ref)

    # ------------------------------------------------------------- search

    def search_next(self) -> None:
        """Ctrl-R: start finding in this pane; again: the next older match."""
        pane = self.state.current_pane
        if pane is None:
            return
        if not self.searching:
            self.searching = True
            if pane.anchor is None:
                self.search_from = (pane.key, None, 0)
            else:
                below, skip = pane.anchor
                self.search_from = (pane.key, pane.lines[len(pane.lines) - 1 - below], skip)
            self.search_saved = self.input.text
            self.input.buffer.reset()
            self.flash("find: type, Ctrl-R older, Enter stay, Esc back")
            return
        self._find(self.input.text, older=True)

    def _typed(self, buffer: Any) -> None:
        self.last_ctrl_c = 0.0  # "twice in a row" only
        self.last_typed = time.monotonic()
        if self.searching:
            self._find(buffer.text, older=False)

    def _find(self, text: str, *, older: bool) -> bool:
        pane = self.state.current_pane
        if pane is None or not text:
            return False
        if older:
            start = self._below_of(pane, self.found)
            if self.found is None and pane.anchor is not None:
                start = pane.anchor[0]
        else:  # as you type: from where the search started, its bottom line included
            start = self._below_of(pane, self.search_from[1])
            start = None if start is None else start - 1
        below = self.view.find(pane, text, start)
        if below is None:
            self.flash(f"not found: {text}")
            return False
        self.found = pane.lines[len(pane.lines) - 1 - below]
        self.view.show(pane, below, self.messages.width, self.messages.height)
        self.app.invalidate()
        return True

    @staticmethod
    def _below_of(pane: Any, line: object) -> int | None:
        """How many lines are below ``line`` in the pane; None if it is not there."""
        if line is None:
            return None
        for index in range(len(pane.lines) - 1, -1, -1):
            if pane.lines[index] is line:
                return len(pane.lines) - 1 - index
        return None

    def end_search(self, *, keep: bool) -> None:
        self.searching = False
        key, line, skip = self.search_from
        pane = self.state.panes.get(key)
        if not keep:
            self.found = None
            if pane is not None:  # back where the search started, in the pane it started in
                below = self._below_of(pane, line)
                pane.anchor = None if below is None else (below, skip)
        self.input.buffer.text = self.search_saved
        self.input.buffer.cursor_position = len(self.search_saved)
        self.app.invalidate()

    # ------------------------------------------------------------- input

    def _accept(self, buffer: Any) -> bool:
        if self.searching:
            self.end_search(keep=True)
            return True  # keep the saved line, not the search text
        self.handle_input(buffer.text)
        return False  # clear the line (it is kept in the history)

    def max_text(self) -> int:
        welcome = self.session.welcome
        return (welcome.limits.get("max_text") if welcome else None) or DEFAULT_MAX_TEXT

    def handle_input(self, line: str, *, confirmed: bool = False) -> None:
        state = self.state
        pane = state.current_pane
        word, _, rest = line.partition(" ")
        command = word[1:].lower() if line.startswith("/") and not line.startswith("//") else ""
        arg = rest.strip()
        if command == "clear":
            if pane is not None:
                pane.clear()
            else:
                state.notes.clear()
            return
        if command == "close":
            if pane is not None and pane.is_dm:
                state.close(pane.key)
            elif pane is not None:
                self.send(Leave(room=pane.key))
            return
        if command in ("query", "q") and arg and " " not in arg:
            try:
                name = check_name(arg)
            except ProtocolError as exc:
                state.note(exc.message, Kind.ERROR)
                return
            state.open_dm(name)
            state.switch(dm_key(name))
            return
        if command == "find":
            if not arg:
                state.note("usage: /find TEXT (or Ctrl-R)", Kind.ERROR)
            elif not self._find(arg, older=True):
                state.note(f"not found in this pane: {arg}", Kind.ERROR)
            return
        if command == "reconnect":
            self.flash("reconnecting…")
            self.session.reconnect_now()
            return
        if command == "filter":
            self.toggle_filter()
            return
        if command == "mouse":
            self.toggle_mouse()
            return
        if not confirmed and self._split_asked(line):
            return
        try:
            request = parse_line(line, self.max_text())
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

    def _split_asked(self, line: str) -> bool:
        """A text over max_text: ask to send it as several messages, cut between words."""
        limit = self.max_text()
        if len(line.encode()) <= limit:
            return False  # the text alone is shorter still
        head = ""
        text = line
        lowered = line.lower()
        if lowered.startswith("/me "):
            head, text = "/me ", line[4:]
        elif lowered.startswith("/msg "):
            _, name, *body = line.split(" ", 2)
            head, text = f"/msg {name} ", body[0] if body else ""
        elif line.startswith("//"):
            head, text = "//", line[2:]
        elif line.startswith("/"):
            return False  # other commands: the server's limit answers
        if len(text.encode()) <= limit:
            return False
        pieces = split_text(text, limit)
        lines = [head + piece if head else self._plain(piece) for piece in pieces]
        self.ask(f"The text is over {limit} bytes: send it as {len(lines)} messages?", lines)
        return True

    @staticmethod
    def _plain(text: str) -> str:
        return "/" + text if text.startswith("/") else text

    def _aim(self, request: Request) -> Request | None:
        """Point a request at the current pane when the line did not name a room."""
        pane = self.state.current_pane
        if isinstance(request, Say):
            if pane is None:
                self.state.note("you are in no room: /join ROOM first", Kind.ERROR)
                return None
            if pane.is_dm:
                return Dm(to=pane.title, text=request.text, action=request.action)
            return replace(request, room=pane.key)
        if pane is None or pane.is_dm:
            if isinstance(request, Leave) and request.room is None and pane is not None:
                self.state.close(pane.key)
                return None
            if isinstance(request, Leave | Who | History) and request.room is None:
                self.state.note("no room here: name one, or /join ROOM", Kind.ERROR)
                return None
            if isinstance(request, Join):
                self.switch_on_join.add(request.room)
            return request
        if isinstance(request, Leave | Who | History) and request.room is None:
            return replace(request, room=pane.key)
        if isinstance(request, Join):
            self.switch_on_join.add(request.room)
        return request

    def send(self, request: Request) -> None:
        ref = self.session.send(request)
        if isinstance(request, History):
            self.state.asked_refs.add(ref)  # old messages: no unread counts, no bells
        if self.session.status is not Status.ONLINE:
            self.state.note("offline: sent when the connection is back")

    def quit(self, reason: str | None = None) -> None:
        if self.quitting:
            return
        self.quitting = True

        async def bye() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.quit(reason), 2)
            self.app.exit(result=0)

        self.app.create_background_task(bye())

    # ------------------------------------------------------------- network

    def on_event(self, event: Event) -> None:
        state = self.state
        if isinstance(event, JoinEvent) and state.is_me(event.name) and not event.quiet:
            # Our join (also after a reconnect): fetch the member list quietly. Not
            # in a big room: thousands of names for each of thousands of joiners
            # after a restart; there /who asks.
            state.quiet_refs.add(self.session.send(Who(room=event.room)))
        if isinstance(event, HistoryReply) and event.ref in self.fetch_refs:
            self.fetch_refs.pop(event.ref)
            pane = state.panes.get(event.room)
            if pane is not None:
                pane.fetching = False
                pane.more_before = event.more
        elif isinstance(event, ErrorEvent) and event.ref in self.fetch_refs:
            pane = state.panes.get(self.fetch_refs.pop(event.ref))
            if pane is not None:
                pane.fetching = False  # PageUp at the top asks again
        before = None
        asked = isinstance(event, HistoryReply) and event.ref in state.asked_refs
        if isinstance(event, HistoryReply) and event.room in state.panes:
            before = state.panes[event.room].last_id()
        state.apply(event)
        if isinstance(event, HistoryReply):
            self._fill_hole(event, None if asked else before)
        if (
            isinstance(event, JoinEvent)
            and state.is_me(event.name)
            and event.room in self.switch_on_join
        ):
            self.switch_on_join.discard(event.room)
            self.switch_to(state.switch(event.room))
        if state.bell_pending:
            state.bell_pending = False
            self.alert()
        # A busy room scrolls every row of the screen on each new line, which
        # prompt_toolkit redraws cell by cell: other people's lines are drawn
        # at LIVE_REDRAW (news in hidden panes at BACKGROUND_REDRAW), while keys
        # and our own lines are drawn at once.
        room = getattr(event, "room", None)
        if isinstance(event, MsgEvent | JoinEvent | LeaveEvent) and not (
            isinstance(event, MsgEvent) and state.is_me(event.from_)
        ):
            self.invalidate_soon(LIVE_REDRAW if room == state.current else BACKGROUND_REDRAW)
        else:
            self.app.invalidate()

    def invalidate_soon(self, delay: float) -> None:
        """Redraw within ``delay`` seconds, once however many events come meanwhile."""
        if not self.app.is_running:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self._redraw_due is not None and self._redraw_due <= due:
            return
        if self._redraw_timer is not None:
            self._redraw_timer.cancel()
        self._redraw_due = due

        def redraw() -> None:
            self._redraw_due = self._redraw_timer = None
            self.app.invalidate()

        self._redraw_timer = loop.call_at(due, redraw)

    def alert(self) -> None:
        """A mention or a DM: the bell and a desktop notification, both rate-limited."""
        alerts, self.state.alerts = self.state.alerts, []
        if not alerts or not self.app.is_running:
            return
        pane = self.state.current_pane
        busy_here = time.monotonic() - self.last_typed < TYPING_SECONDS
        for key, title, body in alerts:
            if busy_here and pane is not None and key == pane.key:
                continue  # talking in this very pane: no pop-up for each answer
            self.notifier.notify(escape(title), body, key)
        self.notifier.bell()

    def _write_raw(self, text: str) -> None:
        if self.app.is_running:
            self.app.output.write_raw(text)
            self.app.output.flush()

    def error_note(self, message: str) -> None:
        """Trouble with a file of ours (logs, history): said once, the chat goes on."""
        self.state.note(message, Kind.ERROR)

    def _fill_hole(self, reply: HistoryReply, last_before: int | None) -> None:
        """A resume the server cut short (``more`` and newer than all we had): page
        back with ``history before`` until the pages reach what we had, as the
        contract asks, so nothing missed while away stays unseen."""
        stop = self.hole_refs.pop(reply.ref, None) if reply.ref is not None else None
        if stop is None:
            if last_before is None:
                return  # a page asked for, or a first join: nothing was missed
            stop = last_before
        if not (reply.more and reply.messages and reply.messages[0].id > stop):
            return
        ref = self.session.send(
            History(room=reply.room, before=reply.messages[0].id, limit=HOLE_PAGE)
        )
        self.hole_refs[ref] = stop
        self.state.asked_refs.add(ref)

    def on_status(self, status: Status, detail: str) -> None:
        if detail != "pong":
            self.state.connection(status.value, detail)
        if status is not Status.ONLINE:
            # Requests in flight died with the connection: let PageUp ask again.
            for key in self.fetch_refs.values():
                if key in self.state.panes:
                    self.state.panes[key].fetching = False
            self.fetch_refs.clear()
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
            self.notifier.close()
            if self.logs is not None:
                self.logs.close()
        return result or 0

    async def _first_ping(self) -> None:
        self.session.ping()  # the status bar shows a latency from the start


def run_tui(config: SessionConfig, settings: TuiSettings) -> int:
    try:
        return asyncio.run(ChatApp(config, settings).run())
    except KeyboardInterrupt:
        return 130


__all__ = ["ChatApp", "ChatCompleter", "run_tui"]
