"""The chat as the full-screen app shows it, independent of any UI toolkit.

Panes (one per room, one per direct-message partner), each with its own
scrollback, unread count, mention marker, read marker and member list.
Events from the session go in through :meth:`ChatState.apply`; the app only
draws this model, so all of it is unit-tested without a terminal.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum

from chatserver.commands import COMMANDS, HELP_LINES
from chatserver.protocol import (
    AwayEvent,
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

SCROLLBACK = 20_000  # lines kept per pane
CLIENT_COMMANDS = ("clear", "close", "query", "find", "reconnect", "filter", "mouse")
NOTES_KEPT = 200  # client notes kept while no pane is open
SMART_FILTER_MEMBERS = 20  # the join/leave filter applies in rooms bigger than this
RECENT_SPEAKERS = 50  # per pane, for completion order and the join/leave filter
GREETING = "/help lists commands and keys; Alt-1..9 switch panes, /quit leaves"
KEY_HELP = (
    "keys:",
    "  Alt-1..9, Alt-0, Alt-J NN    go to pane 1..9, 10, NN    Ctrl-N / Ctrl-P  next / previous",
    "  Alt-A                        next pane with activity (mentions and DMs first)",
    "  PageUp / PageDown / wheel    scroll (older history is fetched at the top)",
    "  Alt-Home / Alt-End           top / back to live     Ctrl-R  find in this pane",
    "  Up / Down                    input history          Tab  complete nick or /command",
    "  F2  member list   F11 / F12  scroll it   Alt-=  join/leave filter   Alt-M  mouse",
    "  Ctrl-C  clear the line (twice on an empty line: quit)",
    "client commands:",
    "  /clear  clear this pane        /query NAME  open a DM pane     /close  close it",
    "  /find TEXT  find in this pane  /reconnect  reconnect now       /filter  /mouse  toggle",
)


class Kind(StrEnum):
    MSG = "msg"
    OWN = "own"
    ACTION = "action"
    DM = "dm"
    SYSTEM = "system"
    PRESENCE = "presence"  # a join, leave or quit: the smart filter may hide it
    ERROR = "error"
    GAP = "gap"


MESSAGE_KINDS = frozenset({Kind.MSG, Kind.OWN, Kind.ACTION, Kind.DM})


@dataclass(eq=False, slots=True)
class Line:
    """One scrollback line. Compared by identity: the view caches its wrapped rows per line."""

    kind: Kind
    ts: str  # RFC 3339 UTC, as on the wire
    text: str  # raw: escaped when drawn
    nick: str = ""
    mention: bool = False
    id: int | None = None  # the message id, for messages
    quiet: bool = False  # a join/leave the smart filter hides (its nick was silent)


class Activity(IntEnum):
    """How much a pane wants attention, WeeChat's hotlist order."""

    NONE = 0
    SYSTEM = 1
    MESSAGE = 2
    MENTION = 3  # a mention, a highlight word or a direct message


@dataclass(eq=False)
class Pane:
    key: str  # room name, or "@" + casefolded partner name
    title: str
    is_dm: bool = False
    scrollback: int = SCROLLBACK
    lines: deque[Line] = field(init=False)
    unread: int = 0  # messages since the pane was last shown
    mentioned: bool = False
    activity: Activity = Activity.NONE
    members: dict[str, str] = field(default_factory=dict)  # name_key -> as spelled
    count: int | None = None  # members the server says there are (join, leave and who say)
    quiet: bool = False  # the server sends no joins and leaves here (a big room): who does
    # The read marker: how many lines came after it (None: no marker).
    marker: int | None = None
    # The view when scrolled back: (lines below the bottom line, rows of that
    # line below the view's bottom); None follows the live end.
    anchor: tuple[int, int] | None = None
    more_before: bool = True  # the server may hold older messages
    fetching: bool = False  # older history asked for, not yet here
    speakers: dict[str, float] = field(default_factory=dict)  # name_key -> last spoke (epoch s)
    joins: dict[str, tuple[Line, float]] = field(default_factory=dict)  # hidden joins, and when
    joined_ts: str | None = None  # our own join: replayed messages before it are not news
    _ids: set[int] = field(default_factory=set)
    _sorted: list[str] | None = None
    _longest: int | None = None

    def __post_init__(self) -> None:
        self.lines = deque(maxlen=self.scrollback)

    # A dataclass with eq=False hashes by identity, which is what the view needs.

    @property
    def scrolled(self) -> bool:
        return self.anchor is not None

    def add(self, line: Line) -> None:
        lines = self.lines
        if len(lines) == lines.maxlen:
            self._forget(lines[0])
        lines.append(line)
        if line.id is not None:
            self._ids.add(line.id)
        if self.marker is not None:
            self.marker = min(self.marker + 1, len(lines))
        if self.anchor is not None:
            below = self.anchor[0] + 1  # keep the view still
            if below >= len(lines):  # its line fell off the top of the scrollback
                self.anchor = (len(lines) - 1, 0)
            else:
                self.anchor = (below, self.anchor[1])

    def prepend(self, older: list[Line]) -> bool:
        """Lines older than everything here (a history page), oldest first; False when full."""
        room = (self.lines.maxlen or 0) - len(self.lines)
        if room <= 0:
            return False
        older = older[len(older) - room :] if room < len(older) else older
        self.lines.extendleft(reversed(older))
        self._ids.update(line.id for line in older if line.id is not None)
        return True

    def insert_message(self, line: Line) -> bool:
        """A message at its place by id; False when the pane already has it."""
        assert line.id is not None
        if line.id in self._ids:
            return False
        ids = [(i, ln.id) for i, ln in enumerate(self.lines) if ln.id is not None]
        pos = bisect.bisect([mid for _, mid in ids], line.id)
        if pos == len(ids):
            self.add(line)
            return True
        index = ids[pos][0]
        if len(self.lines) == self.lines.maxlen:
            if index == 0:
                return False  # older than all we keep
            self._forget(self.lines.popleft())
            index -= 1
        self.lines.insert(index, line)
        self._ids.add(line.id)
        below = len(self.lines) - 1 - index
        if self.marker is not None and self.marker > below:
            self.marker += 1
        if self.anchor is not None and self.anchor[0] >= below:
            self.anchor = (self.anchor[0] + 1, self.anchor[1])
        return True

    def has(self, message_id: int) -> bool:
        return message_id in self._ids

    def first_id(self) -> int | None:
        return next((line.id for line in self.lines if line.id is not None), None)

    def last_id(self) -> int | None:
        return next((line.id for line in reversed(self.lines) if line.id is not None), None)

    def clear(self) -> None:
        self.lines.clear()
        self._ids.clear()
        self.anchor = None
        self.marker = None

    def _forget(self, line: Line) -> None:
        if line.id is not None:
            self._ids.discard(line.id)

    def set_members(self, names: Iterable[str]) -> None:
        self.members = {name_key(n): n for n in names}
        self._sorted = None

    def add_member(self, name: str) -> None:
        self.members[name_key(name)] = name
        self._sorted = None

    def drop_member(self, name: str) -> None:
        if self.members.pop(name_key(name), None) is not None:
            self._sorted = None

    def member_names(self) -> list[str]:
        """Sorted once per change, not per frame: big rooms have thousands."""
        if self._sorted is None:
            self._sorted = sorted(self.members.values(), key=str.casefold)
            self._longest = None
        return self._sorted

    def longest_name(self, measure: Callable[[str], int]) -> int:
        """The widest member name by ``measure`` (the member list's width), once per change."""
        names = self.member_names()
        if self._longest is None:
            self._longest = max(map(measure, names), default=6)
        return self._longest

    def member_count(self) -> int:
        return self.count if self.count is not None else len(self.members)

    def spoke(self, name: str, when: float, window: float) -> None:
        """``name`` spoke at ``when`` (epoch seconds); ``window``: how long that counts."""
        key = name_key(name)
        if when < self.speakers.get(key, 0.0):
            return  # an older message (a history page): the newer one counts
        self.speakers.pop(key, None)
        self.speakers[key] = when
        if len(self.speakers) > RECENT_SPEAKERS:
            # Forget by age, not by count: a busy big room has many recent speakers.
            cutoff = time.time() - window
            for old in [k for k, t in self.speakers.items() if t < cutoff]:
                del self.speakers[old]
        join = self.joins.pop(key, None)
        if join is not None and when - join[1] <= window:
            join[0].quiet = False  # WeeChat's "unmask": a joiner who talks is shown joining

    def spoke_within(self, name: str, seconds: float) -> bool:
        when = self.speakers.get(name_key(name))
        return when is not None and time.time() - when <= seconds

    def hide_join(self, name: str, line: Line, window: float) -> None:
        now = time.time()
        self.joins[name_key(name)] = (line, now)
        if len(self.joins) > RECENT_SPEAKERS:
            for old in [k for k, (_, t) in self.joins.items() if now - t > window]:
                del self.joins[old]


def epoch(ts: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (now, if unparsable)."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def dm_key(name: str) -> str:
    return "@" + name_key(name)


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """Whole words, any case: a name's own characters (``-``, ``.``, ``|``…) are word characters."""
    words = [w for w in words if w]
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    # "alice-bot" and "malice" are not alice; "alice." and "alice:" are.
    return re.compile(
        rf"(?<![\w\-.\[\]{{}}^|])(?:{alternatives})(?![\w\-\[\]{{}}^|]|\.[\w])", re.IGNORECASE
    )


class ChatState:
    def __init__(
        self,
        me: str,
        server: str = "",
        *,
        highlight: Iterable[str] = (),
        scrollback: int = SCROLLBACK,
        smart_filter: bool = True,
        smart_filter_minutes: float = 10.0,
    ) -> None:
        self.me = me
        self.server = server
        self.panes: dict[str, Pane] = {}
        self.current = ""
        self.status = "connecting"
        self.latency: float | None = None
        self.detail = ""  # why offline, and when the next try is
        self.bell_pending = False
        self.alerts: list[tuple[str, str, str]] = []  # (pane key, title, text) to notify of
        self.notes: deque[Line] = deque(maxlen=NOTES_KEPT)  # client lines while no pane is open
        self.highlight = tuple(highlight)
        self.scrollback = scrollback
        self.smart_filter = smart_filter
        self.filter_seconds = smart_filter_minutes * 60
        self.previous = ""  # the pane shown before an activity jump
        self.greeted = False  # the first join shows how to get help
        self._dropped = False
        self.quiet_refs: set[object] = set()  # our automatic requests: no line for the answer
        self.asked_refs: set[object] = set()  # history pages asked for: old, never news
        self.on_line: Callable[[Pane, Line], None] | None = None  # logs new lines to disk
        self._mention_re = self._make_mention_re()

    # ------------------------------------------------------------- panes

    def _make_mention_re(self) -> re.Pattern[str] | None:
        return word_pattern((self.me, *self.highlight))

    def pane(self, key: str, title: str | None = None, is_dm: bool = False) -> Pane:
        pane = self.panes.get(key)
        if pane is None:
            pane = Pane(key=key, title=title or key, is_dm=is_dm, scrollback=self.scrollback)
            self.panes[key] = pane
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
        old = self.panes.get(self.current)
        if old is not None and key != self.current:
            old.marker = 0  # read up to here: what comes next is below the marker
        self.current = key
        pane = self.panes[key]
        pane.unread = 0
        pane.mentioned = False
        pane.activity = Activity.NONE
        return True

    def switch_index(self, index: int) -> bool:
        """Alt-1 is index 0."""
        self.previous = ""  # a switch by hand: Alt-A starts over from here
        keys = self.order()
        return 0 <= index < len(keys) and self.switch(keys[index])

    def switch_relative(self, step: int) -> bool:
        self.previous = ""
        keys = self.order()
        if not keys:
            return False
        pos = keys.index(self.current) if self.current in keys else 0
        return self.switch(keys[(pos + step) % len(keys)])

    def active(self) -> list[tuple[int, Pane]]:
        """Panes other than the current one with activity: (number, pane), most wanted first."""
        found = [
            (number, pane)
            for number, pane in enumerate(self.panes.values(), start=1)
            if pane.activity > Activity.SYSTEM and pane.key != self.current
        ]
        return sorted(found, key=lambda item: (-item[1].activity, item[0]))

    def switch_active(self) -> bool:
        """Alt-A: the most wanted active pane; with none left, back where the jumps started."""
        active = self.active()
        if active:
            if not self.previous or self.previous not in self.panes:
                self.previous = self.current
            return self.switch(active[0][1].key)
        previous, self.previous = self.previous, ""
        return bool(previous) and previous != self.current and self.switch(previous)

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
        """A line from the client itself (help, errors, gaps) in a pane (default: current).

        With no pane open it goes to the notes shown under the "no room open" hint.
        """
        pane = self.panes.get(key or self.current)
        line = Line(kind, now_ts(), text)
        if pane is None:
            self.notes.append(line)
        else:
            pane.add(line)

    def is_me(self, name: str) -> bool:
        return name_key(name) == name_key(self.me)

    def mentions_me(self, text: str) -> bool:
        return self._mention_re is not None and bool(self._mention_re.search(text))

    def _add(self, pane: Pane, line: Line, *, news: bool = True) -> None:
        pane.add(line)
        if self.on_line is not None:  # backlog too: the log skips what it has
            self.on_line(pane, line)
        if not news or pane.key == self.current:
            return
        if line.kind is Kind.PRESENCE and line.quiet:
            return
        level = Activity.SYSTEM
        if line.kind in MESSAGE_KINDS and not (line.kind is Kind.OWN or self.is_me(line.nick)):
            level = Activity.MENTION if (line.mention or pane.is_dm) else Activity.MESSAGE
        pane.activity = max(pane.activity, level)

    def _message(self, pane: Pane, line: Line, *, news: bool = True) -> None:
        if line.nick:
            pane.spoke(line.nick, epoch(line.ts), self.filter_seconds)
        self._add(pane, line, news=news)
        if not news or line.kind is Kind.OWN or self.is_me(line.nick):
            return
        if line.mention or pane.is_dm:
            self.bell_pending = True
            self.alerts.append((pane.key, pane.title, f"<{line.nick}> {line.text}"))
        if pane.key != self.current:
            pane.unread += 1
            if line.mention or pane.is_dm:
                pane.mentioned = True

    def _msg_line(self, msg: MsgEvent | DmEvent, room: str = "") -> Line:
        own = self.is_me(msg.from_)
        if msg.action:
            kind = Kind.ACTION
        elif own:
            kind = Kind.OWN
        else:
            kind = Kind.DM if isinstance(msg, DmEvent) else Kind.MSG
        mention = not own and isinstance(msg, MsgEvent) and self.mentions_me(msg.text)
        return Line(kind, msg.ts, msg.text, msg.from_, mention, msg.id)

    def _presence(self, pane: Pane, ts: str, name: str, text: str, *, joining: bool) -> None:
        quiet = (
            self.smart_filter
            and not pane.is_dm
            and pane.member_count() > SMART_FILTER_MEMBERS
            and not pane.spoke_within(name, self.filter_seconds)
        )
        line = Line(Kind.PRESENCE, ts, text, name, quiet=quiet)
        if quiet and joining:
            pane.hide_join(name, line, self.filter_seconds)
        self._add(pane, line)

    def hidden(self, line: Line) -> bool:
        """Whether the view leaves this line out (the smart filter is on and it is quiet)."""
        return line.quiet and self.smart_filter

    # ------------------------------------------------------------- events

    def apply(self, event: Event) -> None:
        """Fold one server event into the model."""
        if isinstance(event, MsgEvent):
            pane = self.panes.get(event.room)
            if pane is None:
                pane = self.pane(event.room)
            if event.id in pane._ids:
                return
            if event.from_ and name_key(event.from_) not in pane.members:
                pane.add_member(event.from_)  # a quiet room's member: speaking shows them
            self._message(pane, self._msg_line(event))
        elif isinstance(event, DmEvent):
            partner = event.to if self.is_me(event.from_) else event.from_
            pane = self.open_dm(partner)
            if not pane.has(event.id):
                self._message(pane, self._msg_line(event))
        elif isinstance(event, HistoryReply):
            self._history(event)
        elif isinstance(event, JoinEvent):
            self._join(event)
        elif isinstance(event, LeaveEvent):
            self._leave(event)
        elif isinstance(event, NickEvent):
            self._nick(event)
        elif isinstance(event, WhoReply):
            self._who(event)
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
        elif isinstance(event, AwayEvent):
            pane = self.panes.get(dm_key(event.name))
            if pane is not None:
                text = (
                    f"{event.name} is away: {event.text}" if event.text else f"{event.name} is back"
                )
                self._add(pane, Line(Kind.SYSTEM, event.ts, text))
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
        # News: a replay's messages after our own join (a resume's missed ones); never
        # a page somebody asked for (/history, scrolling up), nor the backlog of a join.
        asked = event.ref is not None and event.ref in self.asked_refs
        self.asked_refs.discard(event.ref)
        joined = pane.joined_ts
        if not pane.lines or pane.first_id() is None:
            pane.more_before = event.more
        fresh = [m for m in event.messages if not pane.has(m.id)]
        if not fresh:
            return
        first = pane.first_id()
        older = [m for m in fresh if first is not None and m.id < first]
        # A page from before what is shown (/history, scrolling up) goes on top, in
        # order; with the scrollback full there is no use fetching more.
        if older and not pane.prepend([self._msg_line(m) for m in older]):
            pane.more_before = False
        last = pane.last_id()
        for msg in fresh[len(older) :]:
            line = self._msg_line(msg)
            if last is None or msg.id > last:
                news = not asked and joined is not None and msg.ts > joined
                self._message(pane, line, news=news)
                last = msg.id
            else:
                pane.insert_message(line)  # a hole filled: at its place, not news

    def _who(self, event: WhoReply) -> None:
        pane = self.panes.get(event.room)
        count = event.count if event.count is not None else len(event.names)
        if pane is not None:
            pane.set_members(event.names)
            pane.count = count
            if event.ref is None and pane.quiet and not event.quiet:
                # Unasked: the room shrank back, its joins and leaves are sent again.
                pane.quiet = False
                text = f"{event.room} has {count} members: joins and leaves are shown again"
                self._add(pane, Line(Kind.SYSTEM, now_ts(), text))
                return
            pane.quiet = bool(event.quiet)
        if event.ref is None or event.ref in self.quiet_refs:
            self.quiet_refs.discard(event.ref)
            return
        if event.quiet:  # thousands of names: the member list has them, not one line
            self.note(f"{event.room} has {count} members: the member list shows them (F2)")
            return
        names = ", ".join(event.names) or "nobody"
        self.note(f"in {event.room} ({count}): {names}")

    def _join(self, event: JoinEvent) -> None:
        if self.is_me(event.name):
            pane = self.pane(event.room)
            pane.add_member(event.name)
            if event.members is not None:
                pane.count = event.members
            if event.quiet and not pane.quiet:
                pane.quiet = True
                text = (
                    f"{event.room} is a big room ({event.members} members): joins and "
                    "leaves are not shown; /who lists its members"
                )
                self._add(pane, Line(Kind.SYSTEM, event.ts, text))
            if pane.joined_ts is None:  # not again for the join of a resume
                pane.joined_ts = event.ts
                self._add(pane, Line(Kind.SYSTEM, event.ts, f"you joined {event.room}"))
                if not self.greeted:
                    self.greeted = True
                    pane.add(Line(Kind.SYSTEM, event.ts, GREETING))
            return
        pane = self.panes.get(event.room)
        if pane is None:
            return
        pane.add_member(event.name)
        if event.members is not None:
            pane.count = event.members
        elif pane.count is not None:
            pane.count += 1
        if event.quiet and not pane.quiet:  # this join made the room big: the last one sent
            pane.quiet = True
            text = (
                f"{event.room} is now a big room ({event.members} members): its joins and "
                "leaves are no longer sent"
            )
            self._add(pane, Line(Kind.SYSTEM, event.ts, text))
        self._presence(
            pane, event.ts, event.name, f"{event.name} joined {event.room}", joining=True
        )

    def _leave(self, event: LeaveEvent) -> None:
        pane = self.panes.get(event.room)
        if pane is None:
            return
        if self.is_me(event.name):
            self.close(event.room)
            self.note(f"you left {event.room}")
            return
        pane.drop_member(event.name)
        if event.members is not None:
            pane.count = event.members
        elif pane.count is not None:
            pane.count = max(0, pane.count - 1)
        reason = f" ({event.reason})" if event.reason else ""
        text = f"{event.name} left {event.room}{reason}"
        self._presence(pane, event.ts, event.name, text, joining=False)
        dm = self.panes.get(dm_key(event.name))
        if dm is not None and not self._shares_room(event.name):
            # The partner is gone from every room we can see: likely quit.
            self._add(dm, Line(Kind.SYSTEM, event.ts, f"{event.name} left{reason}"))

    def _shares_room(self, name: str) -> bool:
        key = name_key(name)
        return any(key in pane.members for pane in self.panes.values() if not pane.is_dm)

    def _nick(self, event: NickEvent) -> None:
        text = f"{event.old} is now known as {event.new}"
        if self.is_me(event.old):
            self.me = event.new
            self._mention_re = self._make_mention_re()
            text = f"you are now known as {event.new}"
        old_key = name_key(event.old)
        for pane in self.panes.values():
            if old_key in pane.members:
                pane.drop_member(event.old)
                pane.add_member(event.new)
                self._add(pane, Line(Kind.SYSTEM, event.ts, text))
        old = dm_key(event.old)
        dm = self.panes.get(old)
        new = dm_key(event.new)
        if dm is not None and new != old:
            # Keep the conversation: the pane follows the new name, in place. A pane
            # already open for the new name gives its messages to it.
            other = self.panes.pop(new, None)
            panes = list(self.panes.items())
            dm.key, dm.title = new, event.new
            self.panes = {(new if k == old else k): p for k, p in panes}
            if other is not None:
                for line in other.lines:
                    if line.id is not None:
                        dm.insert_message(line)
            self._add(dm, Line(Kind.SYSTEM, event.ts, text))
            if self.current in (old, new):
                self.current = new
            if self.previous == old:
                self.previous = new
        elif dm is not None:
            self._add(dm, Line(Kind.SYSTEM, event.ts, text))

    # ------------------------------------------------------------- connection

    def connection(self, status: str, detail: str = "") -> None:
        """Record a connection change; a drop and the return are marked in every pane.

        While connecting and once online, ``detail`` names the server
        (``host:port``, and its node once welcomed): the status bar shows it.
        """
        if status in ("connecting", "online") and detail:
            self.server = detail
        self.detail = detail if status == "offline" else ""
        if status == "offline" and self.status == "online":
            self._dropped = True
            self.latency = None
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
        """Candidates for the word being typed at the end of ``text``: recent speakers first."""
        word = text.rsplit(" ", 1)[-1]
        if text == word and word.startswith("/"):
            names = sorted({*COMMANDS, *CLIENT_COMMANDS})
            return ["/" + c + " " for c in names if c.startswith(word[1:].lower())]
        if not word:
            return []
        folded = word.casefold()
        pane = self.current_pane
        names: dict[str, None] = {}  # ordered, and no quadratic look-ups in big rooms
        if pane is not None:
            for key in reversed(pane.speakers):
                name = pane.members.get(key)
                if name:
                    names[name] = None
            names.update(dict.fromkeys(pane.member_names()))
        for other in self.panes.values():
            names.update(dict.fromkeys(other.member_names()))
            if other.is_dm:
                names.setdefault(other.title, None)
        found = [n for n in names if n.casefold().startswith(folded) and not self.is_me(n)]
        if text == word:  # first word of the line: "nick: ", as irssi and WeeChat do
            return [n + ": " for n in found]
        return [n + " " for n in found]
