"""The bars around the message area: tabs, status with the activity list, member list.

Each is a function of the model and a width, so they are tested as text.
"""

from __future__ import annotations

from chatserver.render import escape

from .state import Activity, ChatState, Pane
from .wrap import Fragments, clip, text_width

ACTIVITY_SHOWN = 8  # panes named in the status bar's activity list


def tab_label(number: int, pane: Pane) -> str:
    title = escape(pane.title)
    return f"{number}:@{title}" if pane.is_dm else f"{number}:{title}"


def _tab(number: int, pane: Pane, current: bool) -> Fragments:
    label = f" {tab_label(number, pane)}"
    if current:
        return [("class:tab.current", label + " ")]
    out: Fragments = [("", label)]
    if pane.unread:
        style = "class:tab.mention" if pane.mentioned else "class:tab.unread"
        out.append((style, f"({pane.unread}{'!' if pane.mentioned else ''})"))
    elif pane.activity is Activity.SYSTEM:
        out = [("class:tab.quiet", label)]
    out.append(("", " "))
    return out


def _width(fragments: Fragments) -> int:
    return sum(text_width(text) for _, text in fragments)


def tab_fragments(state: ChatState, width: int) -> Fragments:
    """Every tab when they fit; else a window around the current one, with what is cut off."""
    panes = list(state.panes.values())
    if not panes:
        return [("", " no room open")]
    tabs = [_tab(i, p, p.key == state.current) for i, p in enumerate(panes, start=1)]
    if sum(map(_width, tabs)) <= width:
        return [f for tab in tabs for f in tab]
    current = next((i for i, p in enumerate(panes) if p.key == state.current), 0)
    room = width
    while True:  # the edge markers' widths depend on the window: shrink until all fits
        out = _window(panes, tabs, current, room)
        excess = _width(out) - width
        if excess <= 0 or room <= 0:
            return clip(out, width)
        room -= excess


def _window(panes: list[Pane], tabs: list[Fragments], current: int, room: int) -> Fragments:
    """The tabs around ``current`` that fit in ``room`` columns, with the edge markers."""
    first = last = current
    used = _width(tabs[current])
    grew = True
    while grew:  # grow right first (newer panes), then left, while they fit
        grew = False
        if last + 1 < len(tabs) and used + _width(tabs[last + 1]) <= room:
            last += 1
            used += _width(tabs[last])
            grew = True
        if first > 0 and used + _width(tabs[first - 1]) <= room:
            first -= 1
            used += _width(tabs[first])
            grew = True
    out: Fragments = []
    if first > 0:
        out.append(_edge(panes[:first], f"«{first}"))
    for tab in tabs[first : last + 1]:
        out.extend(tab)
    if last + 1 < len(tabs):
        out.append(_edge(panes[last + 1 :], f"{len(tabs) - last - 1}»"))
    return out


def _edge(hidden: list[Pane], label: str) -> tuple[str, str]:
    """The marker for tabs cut off: coloured when one of them has a mention or news."""
    if any(p.mentioned for p in hidden):
        return ("class:tab.mention", f" {label}! ")
    if any(p.unread for p in hidden):
        return ("class:tab.unread", f" {label}+ ")
    return ("", f" {label} ")


def activity_fragments(state: ChatState) -> Fragments:
    """WeeChat's hotlist: ``[act: 3:@bob 2:dev(4)]``, mentions first."""
    active = state.active()
    if not active:
        return []
    out: Fragments = [("", " │ act:")]
    for number, pane in active[:ACTIVITY_SHOWN]:
        style = "class:tab.mention" if pane.activity is Activity.MENTION else "class:tab.unread"
        count = f"({pane.unread})" if pane.unread else ""
        out.append((style, f" {tab_label(number, pane)}{count}"))
    if len(active) > ACTIVITY_SHOWN:
        out.append(("", f" +{len(active) - ACTIVITY_SHOWN}"))
    return out


def member_width(state: ChatState, width: int) -> int:
    """Columns for the member list: its longest name, within a fifth of the screen; 0 hides it."""
    pane = state.current_pane
    if width < 50:
        return 0
    drawn = pane is not None and not pane.is_dm
    longest = pane.longest_name(lambda n: text_width(escape(n))) if drawn else 6
    return max(8, min(longest + 1, 24, width // 5))


def member_fragments(state: ChatState, width: int, height: int, offset: int) -> Fragments:
    """The title, then the names from ``offset`` on; what does not fit is counted."""
    pane = state.current_pane
    if pane is None or pane.is_dm:
        return [("class:members.title", "direct\n")]
    names = pane.member_names()
    total = pane.member_count()
    out: Fragments = [("class:members.title", clip([("", f"{total} here")], width)[0][1] + "\n")]
    shown = names[offset : offset + max(0, height - 1)]
    more = len(names) - offset - len(shown)
    if more > 0 and shown:
        shown = shown[:-1]
        more += 1
    for name in shown:
        style = "class:own-nick" if state.is_me(name) else "class:members"
        out.extend(clip([(style, escape(name))], width))
        out.append(("", "\n"))
    if more > 0:
        out.append(("class:system", f"+{more} more"[:width]))
    if total > len(names) and not more:
        out.append(("class:system", f"+{total - len(names)} more"[:width]))
    if pane.quiet and not more:
        out.append(("class:system", "\n(/who)"))
    return out
