"""The chat as the full-screen app shows it, independent of any UI toolkit.

Panes (one per room, one per direct-message partner), each with its own
scrollback, unread count, mention marker and member list. Events from the
session go in through :meth:`ChatState.apply`; the app only draws this model,
so all of it is unit-tested without a terminal.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from chatserver.commands import COMMANDS, HELP_LINES
from chatserver.protocol import (
    Bye,
    DmEvent,
    ErrorEvent,
    Event,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Pong,
    RoomsReply,
    Welcome,
    WhoReply,
    name_key,
    now_ts,
)

SCROLLBACK = 5000  # lines kept per pane
CLIENT_COMMANDS = ("clear", "close", "query")
KEY_HELP = (
    "keys:",
    "  Alt-1..9 / Ctrl-N / Ctrl-P   switch pane        F2   member list",
    "  PageUp / PageDown / wheel    scroll             End  back to live",
    "  Up / Down                    input history      Tab  complete nick or /command",
    "  /clear  clear this pane    /query NAME  open a DM pane    /close  close it",
)


class Kind(StrEnum):
    MSG = "msg"
    OWN = "own"
    ACTION = "action"
    DM = "dm"
    SYSTEM = "system"
    ERROR = "error"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Line:
    kind: Kind
    ts: str  # RFC 3339 UTC, as on the wire
    text: str  # raw: escaped when drawn
    nick: str = ""
    mention: bool = False


@dataclass
class Pane:
    key: str  # room name, or "@" + casefolded partner name
    title: str
    is_dm: bool = False
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=SCROLLBACK))
    unread: int = 0
    mentioned: bool = False
    members: dict[str, str] = field(default_factory=dict)  # casefolded -> as spelled
    loaded: bool = False  # its first history arrived: later history is news
    scroll: int = 0  # lines above the live bottom; 0 = follow new lines

    def add(self, line: Line) -> None:
        self.lines.append(line)
        if self.scroll:
            self.scroll += 1  # keep the view still while the user reads back

    def member_names(self) -> list[str]:
        return sorted(self.members.values(), key=str.casefold)


def dm_key(name: str) -> str:
    return "@" + name_key(name)


class ChatState:
    def __init__(self, me: str, server: str = "") -> None:
        self.me = me
        self.server = server
        self.panes: dict[str, Pane] = {}
        self.current = ""
        self.status = "connecting"
        self.latency: float | None = None
        self.bell_pending = False
        self._dropped = False
        self.quiet_refs: set[object] = set()  # our automatic requests: no line for the answer
        self._mention_re = self._make_mention_re()

    # ------------------------------------------------------------- panes

    def _make_mention_re(self) -> re.Pattern[str]:
        return re.compile(rf"(?<![\w]){re.escape(self.me)}(?![\w])", re.IGNORECASE)

    def pane(self, key: str, title: str | None = None, is_dm: bool = False) -> Pane:
        pane = self.panes.get(key)
        if pane is None:
            pane = self.panes[key] = Pane(key=key, title=title or key, is_dm=is_dm)
            if not self.current:
                self.current = key
        return pane

    @property
    def current_pane(self) -> Pane | None:
        return self.panes.get(self.current)

    def order(self) -> list[str]:
        return list(self.panes)

    def switch(self, key: str) -> bool:
        if key not in self.panes:
            return False
        self.current = key
        pane = self.panes[key]
        pane.unread = 0
        pane.mentioned = False
        return True

    def switch_index(self, index: int) -> bool:
        """Alt-1 is index 0."""
        keys = self.order()
        return 0 <= index < len(keys) and self.switch(keys[index])

    def switch_relative(self, step: int) -> bool:
        keys = self.order()
        if not keys:
            return False
        pos = keys.index(self.current) if self.current in keys else 0
        return self.switch(keys[(pos + step) % len(keys)])

    def close(self, key: str) -> None:
        if key not in self.panes:
            return
        keys = self.order()
        pos = keys.index(key)
        del self.panes[key]
        if self.current == key:
            rest = self.order()
            self.current = ""
            if rest:
                self.switch(rest[min(pos, len(rest) - 1)])

    def open_dm(self, name: str) -> Pane:
        return self.pane(dm_key(name), name, is_dm=True)

    # ------------------------------------------------------------- lines

    def note(self, text: str, kind: Kind = Kind.SYSTEM, key: str | None = None) -> None:
        """A line from the client itself (help, errors, gaps) in a pane (default: current)."""
        pane = self.panes.get(key or self.current)
        if pane is None:
            pane = self.pane("status", "status")
        pane.add(Line(kind, now_ts(), text))

    def is_me(self, name: str) -> bool:
        return name_key(name) == name_key(self.me)

    def mentions_me(self, text: str) -> bool:
        return bool(self._mention_re.search(text))

    def _message(self, pane: Pane, line: Line, *, news: bool = True) -> None:
        pane.add(line)
        if not news or line.kind is Kind.OWN:
            return
        if line.mention or pane.is_dm:
            self.bell_pending = True
        if pane.key != self.current:
            pane.unread += 1
            if line.mention or pane.is_dm:
                pane.mentioned = True

    def _msg_line(self, msg: MsgEvent) -> Line:
        own = self.is_me(msg.from_)
        kind = Kind.ACTION if msg.action else Kind.OWN if own else Kind.MSG
        mention = not own and self.mentions_me(msg.text)
        return Line(kind, msg.ts, msg.text, msg.from_, mention)

    # ------------------------------------------------------------- events

    def apply(self, event: Event) -> None:
        """Fold one server event into the model."""
        if isinstance(event, MsgEvent):
            self._message(self.pane(event.room), self._msg_line(event))
        elif isinstance(event, DmEvent):
            partner = event.to if self.is_me(event.from_) else event.from_
            pane = self.open_dm(partner)
            own = self.is_me(event.from_)
            kind = Kind.ACTION if event.action else (Kind.OWN if own else Kind.DM)
            self._message(pane, Line(kind, event.ts, event.text, event.from_, False))
        elif isinstance(event, HistoryReply):
            self._history(event)
        elif isinstance(event, JoinEvent):
            self._join(event)
        elif isinstance(event, LeaveEvent):
            self._leave(event)
        elif isinstance(event, NickEvent):
            self._nick(event)
        elif isinstance(event, WhoReply):
            pane = self.panes.get(event.room)
            if pane is not None:
                pane.members = {name_key(n): n for n in event.names}
            if event.ref not in self.quiet_refs:
                names = ", ".join(event.names) or "nobody"
                self.note(f"in {event.room}: {names}")
            self.quiet_refs.discard(event.ref)
        elif isinstance(event, RoomsReply):
            listing = ", ".join(f"{r.name} ({r.members})" for r in event.rooms) or "none"
            self.note(f"rooms: {listing}")
        elif isinstance(event, Welcome):
            self.me = event.name
            self._mention_re = self._make_mention_re()
            for room in event.rooms:
                self.pane(room)
            if event.motd:
                self.note(event.motd)
        elif isinstance(event, ErrorEvent):
            self.note(f"{event.code.replace('_', ' ')}: {event.message}", Kind.ERROR)
        elif isinstance(event, Bye):
            self.note(f"the server closed the connection ({event.reason})", Kind.ERROR)
        elif isinstance(event, Pong):
            pass

    def _history(self, event: HistoryReply) -> None:
        pane = self.pane(event.room)
        if event.gap:
            # The server cannot prove it sent everything since we last saw
            # this room (its shared log lost some): the user should know.
            pane.add(
                Line(
                    Kind.ERROR, now_ts(), "some messages here may be missing (the server lost them)"
                )
            )
        if not event.messages:
            pane.loaded = True
            return
        news = pane.loaded
        first_shown = next((line.ts for line in pane.lines if line.kind is not Kind.SYSTEM), None)
        older = [m for m in event.messages if first_shown is not None and m.ts < first_shown]
        if older and len(older) == len(event.messages):
            # Backfill from /history: older than anything shown, so it goes on top.
            for msg in reversed(older):
                pane.lines.appendleft(self._msg_line(msg))
            return
        for msg in event.messages:
            self._message(pane, self._msg_line(msg), news=news)
        pane.loaded = True

    def _join(self, event: JoinEvent) -> None:
        if self.is_me(event.name):
            existed = event.room in self.panes
            pane = self.pane(event.room)
            pane.members[name_key(event.name)] = event.name
            if not existed:
                pane.add(Line(Kind.SYSTEM, event.ts, f"you joined {event.room}"))
            return
        pane = self.panes.get(event.room)
        if pane is not None:
            pane.members[name_key(event.name)] = event.name
            pane.add(Line(Kind.SYSTEM, event.ts, f"{event.name} joined {event.room}"))

    def _leave(self, event: LeaveEvent) -> None:
        pane = self.panes.get(event.room)
        if pane is None:
            return
        if self.is_me(event.name):
            self.close(event.room)
            self.note(f"you left {event.room}")
            return
        pane.members.pop(name_key(event.name), None)
        reason = f" ({event.reason})" if event.reason else ""
        pane.add(Line(Kind.SYSTEM, event.ts, f"{event.name} left {event.room}{reason}"))

    def _nick(self, event: NickEvent) -> None:
        text = f"{event.old} is now known as {event.new}"
        if self.is_me(event.old):
            self.me = event.new
            self._mention_re = self._make_mention_re()
            text = f"you are now known as {event.new}"
        old_key = name_key(event.old)
        for pane in self.panes.values():
            if old_key in pane.members:
                del pane.members[old_key]
                pane.members[name_key(event.new)] = event.new
                pane.add(Line(Kind.SYSTEM, event.ts, text))
        dm = self.panes.pop(dm_key(event.old), None)
        if dm is not None:
            # Keep the conversation: the pane follows the new name, in place.
            dm.key, dm.title = dm_key(event.new), event.new
            dm.add(Line(Kind.SYSTEM, event.ts, text))
            self.panes[dm.key] = dm
            if self.current == dm_key(event.old):
                self.current = dm.key

    # ------------------------------------------------------------- connection

    def connection(self, status: str, detail: str = "") -> None:
        """Record a connection change; a drop and the return are marked in every pane.

        While connecting and once online, ``detail`` names the server
        (``host:port``, and its node once welcomed): the status bar shows it.
        """
        if status in ("connecting", "online") and detail:
            self.server = detail
        if status == "offline" and self.status == "online":
            self._dropped = True
            for pane in self.panes.values():
                pane.add(Line(Kind.GAP, now_ts(), f"connection lost ({detail})"))
        elif status == "online" and self._dropped:
            self._dropped = False
            where = f" to {detail}" if detail else ""
            for pane in self.panes.values():
                pane.add(Line(Kind.GAP, now_ts(), f"reconnected{where}; what was missed follows"))
        self.status = status

    # ------------------------------------------------------------- input help

    def help_lines(self) -> list[str]:
        return [*HELP_LINES, *KEY_HELP]

    def completions(self, text: str) -> list[str]:
        """Candidates for the word being typed at the end of ``text``."""
        word = text.rsplit(" ", 1)[-1]
        if text == word and word.startswith("/"):
            names = sorted({*COMMANDS, *CLIENT_COMMANDS})
            return ["/" + c for c in names if c.startswith(word[1:].lower())]
        if not word:
            return []
        folded = word.casefold()
        pane = self.current_pane
        names: list[str] = pane.member_names() if pane else []
        for other in self.panes.values():
            names.extend(n for n in other.member_names() if n not in names)
            if other.is_dm and other.title not in names:
                names.append(other.title)
        found = [n for n in names if n.casefold().startswith(folded) and not self.is_me(n)]
        if text == word:  # first word of the line: irssi style "nick: "
            return [n + ":" for n in found]
        return found
