"""What the message area shows of a pane: rows, scrolling by rows, the read marker.

Only what is visible is drawn: a frame walks up from the line at the bottom
of the view until the rows are full, so its cost follows the window's height,
not the pane's length. Each line's wrapped rows are cached per width.

The view position is ``Pane.anchor``: (lines below the bottom line, rows of
that line hidden below the view), or None to follow the live end. Lines
arriving below do not move it; older history arriving on top does not either.
A line's *block* is its rows plus the rows drawn above it: the day-change
line and the read marker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .render import day_label, line_parts, local_day
from .state import ChatState, Line, Pane
from .wrap import Fragments, clip, wrap

CACHE_LINES = 4096  # wrapped lines kept: a few screens' worth, in every pane


@dataclass
class Frame:
    rows: list[Fragments]  # top to bottom, exactly the height asked for
    at_top: bool  # the first line of the pane is in view
    below: int  # lines below the view (0 when live)


class PaneView:
    def __init__(self, state: ChatState, today: Callable[[], str] | None = None) -> None:
        self.state = state
        self._rows: OrderedDict[tuple[Line, int], list[Fragments]] = OrderedDict()
        self._today = today

    # ------------------------------------------------------------- rows

    def rows_of(self, line: Line, width: int) -> list[Fragments]:
        key = (line, width)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = wrap(*line_parts(line), width)
            if len(self._rows) > CACHE_LINES:
                self._rows.popitem(last=False)
        return rows

    def block(self, pane: Pane, index: int, width: int) -> list[Fragments]:
        """The rows of line ``index`` and of what is drawn just above it, top to bottom."""
        lines = pane.lines
        line = lines[index]
        rows: list[Fragments] = []
        if index == 0:
            if pane.fetching:
                rows.append(clip([("class:system", "-- fetching older messages…")], width))
            day = local_day(line.ts)
            if day != self.today():
                rows.append(self._day_row(line.ts, width))
        elif local_day(lines[index - 1].ts) != local_day(line.ts):
            rows.append(self._day_row(line.ts, width))
        marker = pane.marker
        if marker and index == len(lines) - marker:
            rows.append([("class:marker", "─" * width)])
        if not self.state.hidden(line):
            rows.extend(self.rows_of(line, width))
        return rows

    def _day_row(self, ts: str, width: int) -> Fragments:
        label = f"─── {day_label(ts)} "
        return clip([("class:day", label + "─" * max(0, width - len(label)))], width)

    def today(self) -> str:
        if self._today is not None:
            return self._today()
        from chatserver.protocol import now_ts

        return local_day(now_ts())

    # ------------------------------------------------------------- a frame

    def _position(self, pane: Pane, width: int) -> tuple[int, int]:
        """The anchor, made valid: within the pane, its row offset within its line's
        block at this width (a resize or a dropped line may have moved both)."""
        if pane.anchor is None or not pane.lines:
            return 0, 0
        below, skip = pane.anchor
        below = max(0, min(below, len(pane.lines) - 1))
        size = len(self.block(pane, len(pane.lines) - 1 - below, width))
        skip = max(0, min(skip, size - 1))
        pane.anchor = (below, skip)
        return below, skip

    def frame(self, pane: Pane, width: int, height: int) -> Frame:
        lines = pane.lines
        below, skip = self._position(pane, width)
        index = len(lines) - 1 - below
        up: list[Fragments] = []  # bottom to top
        while index >= 0 and len(up) < height:
            rows = self.block(pane, index, width)
            if skip:
                rows, skip = rows[: max(0, len(rows) - skip)], 0
            up.extend(reversed(rows))
            index -= 1
        at_top = index < 0 and len(up) <= height
        if at_top and len(up) < height and pane.anchor is not None:
            # Scrolled back with lines gone from the top (a full scrollback): the
            # first line goes to the top again rather than over blank rows.
            self._clamp_top(pane, width, height)
            if pane.anchor != (below, skip):
                return self.frame(pane, width, height)
        up = up[:height]
        up.reverse()
        # Fewer rows than the window: they sit at the bottom, next to the input, as irssi does.
        return Frame([[] for _ in range(height - len(up))] + up, at_top, below)

    # ------------------------------------------------------------- scrolling

    def scroll(self, pane: Pane, rows: int, width: int, height: int) -> bool:
        """Move the view ``rows`` up (negative: down); True when it reached the top."""
        lines = pane.lines
        if not lines:
            pane.anchor = None
            return True
        below, skip = self._position(pane, width)
        if rows < 0:
            skip += rows
            while skip < 0:
                if below == 0:
                    pane.anchor = None
                    return False
                below -= 1
                skip += len(self.block(pane, len(lines) - 1 - below, width))
            pane.anchor = None if below == 0 and skip == 0 else (below, skip)
            return False
        skip += rows
        while True:
            index = len(lines) - 1 - below
            size = len(self.block(pane, index, width))
            if skip < size:
                break
            if index == 0:
                skip = max(0, size - 1)
                break
            skip -= size
            below += 1
        pane.anchor = (below, skip)
        return self._clamp_top(pane, width, height)

    def _clamp_top(self, pane: Pane, width: int, height: int) -> bool:
        """Never show blank rows above the first line while scrolled back."""
        below, skip = self._position(pane, width)
        lines = pane.lines
        seen = 0
        index = len(lines) - 1 - below
        while index >= 0:
            size = len(self.block(pane, index, width))
            seen += size - skip if index == len(lines) - 1 - below else size
            if seen >= height:
                return index == 0 and seen == height
            index -= 1
        # The first line is in view with room to spare: put its top at the top.
        seen, index = 0, 0
        while index < len(lines):
            size = len(self.block(pane, index, width))
            if seen + size >= height:
                below = len(lines) - 1 - index
                pane.anchor = (
                    (below, seen + size - height) if below or seen + size > height else None
                )
                return True
            seen += size
            index += 1
        pane.anchor = None  # everything fits: nothing to scroll
        return True

    def page(self, height: int) -> int:
        """Rows a PageUp moves: a screen, less one row kept for context."""
        return max(1, height - 1)

    def to_top(self, pane: Pane, width: int, height: int) -> None:
        if pane.lines:
            pane.anchor = (len(pane.lines) - 1, 0)
            self._clamp_top(pane, width, height)

    # ------------------------------------------------------------- finding

    def find(self, pane: Pane, text: str, before: int | None = None) -> int | None:
        """Lines below the newest line that contains ``text`` (any case), above ``before``."""
        needle = text.casefold()
        lines = pane.lines
        start = len(lines) - 1 - (before + 1 if before is not None else 0)
        for index in range(start, -1, -1):
            line = lines[index]
            if self.state.hidden(line):
                continue  # not drawn: nothing to show
            if needle in line.text.casefold() or needle in line.nick.casefold():
                return len(lines) - 1 - index
        return None

    def show(self, pane: Pane, below: int, width: int, height: int) -> None:
        """Scroll so that the line ``below`` lines above the end is at the bottom."""
        pane.anchor = (below, 0) if below else None
        if below:
            self._clamp_top(pane, width, height)


def notes_frame(notes: list[Line], view: PaneView, width: int, height: int) -> Frame:
    """The message area while no pane is open: the client's notes, then the hint."""
    rows: list[Fragments] = []
    for line in notes:
        rows.extend(view.rows_of(line, width))
    rows.append(clip([("class:system", "no room open: /join ROOM")], width))
    rows = rows[-height:]
    return Frame([[] for _ in range(height - len(rows))] + rows, True, 0)
