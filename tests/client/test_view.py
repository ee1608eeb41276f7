"""The message area's rows, scrolling and wrapping, without a terminal."""

from __future__ import annotations

import re

from chatclient.bars import activity_fragments, member_fragments, tab_fragments
from chatclient.split import split_text
from chatclient.state import ChatState, Kind, Line, word_pattern
from chatclient.view import PaneView
from chatclient.wrap import wrap
from chatserver.protocol import (
    DmEvent,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Welcome,
    WhoReply,
)

TS = "2026-11-24T10:00:00.000Z"


def text(row: list[tuple[str, str]]) -> str:
    return "".join(t for _, t in row)


def chat(*rooms: str) -> ChatState:
    state = ChatState("alice")
    state.apply(Welcome("alice", 1, "s", list(rooms), {}, "tok"))
    for room in rooms:
        state.apply(JoinEvent(room=room, name="alice", ts=TS))
        state.apply(HistoryReply(room=room, messages=[], more=False))
    return state


def msg(i: int, body: str = "", room: str = "lobby", ts: str = TS) -> MsgEvent:
    return MsgEvent(id=i, ts=ts, room=room, from_="bob", text=body or f"message {i}")


def numbers(rows: list[list[tuple[str, str]]]) -> list[int]:
    return [int(n) for row in rows for n in re.findall(r"message (\d+)", text(row))]


def test_wrap_breaks_between_words_and_indents_under_the_text() -> None:
    prefix = [("", "10:00 "), ("", "<bob> ")]
    rows = wrap(prefix, [("", "alpha beta gamma delta epsilon")], 24)
    assert [text(r) for r in rows] == [
        "10:00 <bob> alpha beta",
        "            gamma delta",
        "            epsilon",
    ]
    long_word = wrap(prefix, [("", "x" * 30)], 20)
    assert (
        all(len(text(r)) <= 20 for r in long_word)
        and "".join(text(r).strip() for r in long_word) == "10:00 <bob> " + "x" * 30
    )
    narrow = wrap(prefix, [("", "one two three")], 14)  # the prefix is over half: indent 2
    assert [text(r) for r in narrow][1:] == ["  one two", "  three"]


def test_frame_fills_from_the_bottom_and_costs_only_the_visible_rows() -> None:
    state = chat("lobby")
    pane = state.panes["lobby"]
    for i in range(1, 10_001):
        state.apply(msg(i))
    view = PaneView(state, today=lambda: "2026-11-24")
    frame = view.frame(pane, 60, 10)
    assert numbers(frame.rows) == list(range(9991, 10_001)) and not frame.at_top
    assert len(view._rows) <= 12  # only what was drawn was wrapped

    few = chat("dev")
    few.apply(msg(1, room="dev"))
    rows = PaneView(few, today=lambda: "2026-11-24").frame(few.panes["dev"], 60, 7).rows
    assert [text(r) for r in rows[:3]] == ["", "", ""]  # sitting at the bottom
    assert "you joined dev" in text(rows[3])
    assert "message 1" in text(rows[-1])


def test_pages_cover_every_row_once_wrapped_lines_too() -> None:
    state = chat("lobby")
    pane = state.panes["lobby"]
    for i in range(1, 201):
        state.apply(msg(i, f"message {i} " + ("word " * 40 if i % 3 == 0 else "")))
    view = PaneView(state, today=lambda: "2026-11-24")
    width, height = 50, 12
    frame = view.frame(pane, width, height)
    seen = [text(r) for r in frame.rows]
    while not frame.at_top:
        view.scroll(pane, view.page(height), width, height)
        frame = view.frame(pane, width, height)
        page = [text(r) for r in frame.rows]
        if not frame.at_top:
            assert page[-1] == seen[0]  # one row kept for context, none skipped
            seen = page[:-1] + seen
            continue
        # The last page stops at the first row: it overlaps more.
        overlap = next(k for k in range(height, 0, -1) if page[-k:] == seen[:k])
        seen = page[:-overlap] + seen
    assert "you joined lobby" in seen[0]  # the very first row of the pane
    assert numbers([[("", r)] for r in seen]) == list(range(1, 201))
    while pane.anchor is not None:
        view.scroll(pane, -view.page(height), width, height)
    assert numbers(view.frame(pane, width, height).rows)[-1] == 200


def test_new_lines_and_older_history_do_not_move_a_view_scrolled_back() -> None:
    state = chat("lobby")
    pane = state.panes["lobby"]
    for i in range(100, 201):
        state.apply(msg(i))
    view = PaneView(state, today=lambda: "2026-11-24")
    view.scroll(pane, 30, 40, 10)
    before = numbers(view.frame(pane, 40, 10).rows)
    state.apply(msg(201))
    state.apply(HistoryReply(room="lobby", messages=[msg(i) for i in range(50, 100)], more=True))
    assert numbers(view.frame(pane, 40, 10).rows) == before
    assert [ln.id for ln in pane.lines if ln.id][:3] == [50, 51, 52]


def test_history_merges_by_id_without_duplicates() -> None:
    state = chat("lobby")
    state.apply(HistoryReply(room="lobby", messages=[msg(i) for i in range(51, 101)], more=True))
    state.apply(HistoryReply(room="lobby", messages=[msg(i) for i in range(1, 101)], more=False))
    state.apply(HistoryReply(room="lobby", messages=[msg(i) for i in (40, 99, 101)], more=False))
    ids = [ln.id for ln in state.panes["lobby"].lines if ln.id is not None]
    assert ids == list(range(1, 102))


def test_read_marker_and_day_lines() -> None:
    state = chat("lobby", "dev")
    state.apply(msg(1, "yesterday", ts="2026-11-23T10:00:00.000Z"))
    state.apply(msg(2, "read", ts=TS))
    state.switch("dev")
    state.apply(msg(3, "unread"))
    state.switch("lobby")
    rows = [
        text(r)
        for r in PaneView(state, today=lambda: "2026-11-24").frame(state.panes["lobby"], 60, 8).rows
        if text(r)
    ]
    assert rows[-2].startswith("─" * 10) and "unread" in rows[-1] and "read" in rows[-3]
    day = [r for r in rows if r.startswith("───") and "2026" in r]
    assert len(day) == 2  # the first line's day (not today), then the change to today


def test_activity_order_alt_a_and_the_bars() -> None:
    state = chat("lobby", "dev", "ops")
    state.apply(msg(1, room="dev"))
    state.apply(LeaveEvent(room="ops", name="carol", ts=TS))
    state.apply(DmEvent(id=2, ts=TS, from_="bob", to="alice", text="psst"))
    assert [p.key for _, p in state.active()] == ["@bob", "dev"]  # ops' leave is no activity
    assert text(activity_fragments(state)) == " │ act: 4:@bob(1) 2:dev(1)"
    assert state.switch_active() and state.current == "@bob"
    assert state.switch_active() and state.current == "dev"
    assert state.switch_active() and state.current == "lobby"  # back where it started
    tabs = text(tab_fragments(state, 200))
    assert "4:@bob" in tabs and "2:dev" in tabs
    for i in range(30):
        state.pane(f"room{i}")
    state.switch("room20")
    cut = text(tab_fragments(state, 60))
    assert "room20" in cut and "«" in cut and "»" in cut and len(cut) <= 60


def test_member_list_scrolls_and_counts_what_it_cannot_show() -> None:
    state = chat("lobby")
    for i in range(30):
        state.apply(JoinEvent(room="lobby", name=f"user{i:02d}", ts=TS))
    shown = text(member_fragments(state, 12, 10, 0)).splitlines()
    assert shown[0] == "31 here" and shown[-1].startswith("+") and len(shown) == 10
    later = text(member_fragments(state, 12, 10, 20)).splitlines()
    assert later[1] == "user19"


def test_mentions_are_whole_names_and_highlight_words() -> None:
    pattern = word_pattern(["alice", "deploy"])
    assert pattern is not None
    hits = ["alice: hi", "hi ALICE.", "(alice)", "about the deploy"]
    misses = ["alice-bot ran", "malice", "alice.bot", "alice_2", "deployment"]
    assert all(pattern.search(t) for t in hits)
    assert not any(pattern.search(t) for t in misses)
    state = ChatState("alice", highlight=["deploy"])
    state.apply(msg(1, "the deploy is done"))
    assert state.panes["lobby"].lines[-1].mention


def test_smart_filter_hides_silent_joiners_until_they_speak() -> None:
    state = chat("lobby")
    pane = state.panes["lobby"]
    for i in range(25):
        state.apply(JoinEvent(room="lobby", name=f"u{i}", ts=TS))
    quiet = [ln for ln in pane.lines if ln.kind is Kind.PRESENCE and state.hidden(ln)]
    assert len(quiet) > 0 and all(int(ln.nick[1:]) >= 19 for ln in quiet)
    state.apply(MsgEvent(id=9, ts=TS, room="lobby", from_="u24", text="hello"))
    assert not state.hidden(next(ln for ln in pane.lines if ln.nick == "u24"))
    state.smart_filter = False
    assert not any(state.hidden(ln) for ln in pane.lines)


def test_a_dm_pane_hears_its_partner_leave() -> None:
    state = chat("lobby")
    state.apply(JoinEvent(room="lobby", name="bob", ts=TS))
    state.apply(DmEvent(id=1, ts=TS, from_="bob", to="alice", text="hi"))
    state.apply(LeaveEvent(room="lobby", name="bob", ts=TS, reason="quit"))
    assert state.panes["@bob"].lines[-1].text == "bob left (quit)"


def test_notes_without_a_pane_are_kept_for_the_hint_screen() -> None:
    state = ChatState("alice")
    state.note("you left lobby")
    assert not state.panes and [ln.text for ln in state.notes] == ["you left lobby"]
    assert isinstance(state.notes[0], Line)


def test_split_text_cuts_between_words_within_the_byte_limit() -> None:
    assert split_text("short", 10) == ["short"]
    pieces = split_text("ab cd ef gh ij", 5)
    assert pieces == ["ab cd", "ef gh", "ij"]
    cut = split_text("é" * 10, 5)  # two bytes each: never half a character
    assert all(len(p.encode()) <= 5 for p in cut) and "".join(cut) == "é" * 10


def test_a_big_quiet_room_keeps_its_count_and_learns_speakers() -> None:
    state = ChatState("alice")
    state.apply(Welcome("alice", 1, "s", ["big"], {}, "tok"))
    state.apply(JoinEvent(room="big", name="alice", ts=TS, members=5000, quiet=True))
    pane = state.panes["big"]
    assert pane.quiet and pane.member_count() == 5000
    assert any("big room (5000 members)" in ln.text for ln in pane.lines)
    state.apply(MsgEvent(id=1, ts=TS, room="big", from_="zoe", text="hi"))
    assert "zoe" in pane.member_names() and pane.member_count() == 5000
    state.apply(WhoReply(room="big", names=["alice", "bob"], count=4999, quiet=True))
    assert pane.member_count() == 4999 and pane.member_names() == ["alice", "bob"]
    shown = text(member_fragments(state, 12, 10, 0))
    assert shown.startswith("4999 here") and "+4997 more" in shown


def test_a_full_scrollback_or_a_resize_never_leaves_the_view_out_of_bounds() -> None:
    state = ChatState("alice", scrollback=10)
    state.apply(Welcome("alice", 1, "s", ["lobby"], {}, "tok"))
    pane = state.pane("lobby")
    for i in range(1, 11):
        state.apply(msg(i))
    view = PaneView(state, today=lambda: "2026-11-24")
    view.to_top(pane, 60, 5)
    for i in range(11, 31):  # the lines in view fall off the top
        state.apply(msg(i))
    assert numbers(view.frame(pane, 60, 5).rows) == [21, 22, 23, 24, 25]
    view.scroll(pane, 4, 60, 5)
    assert numbers(view.frame(pane, 60, 5).rows) == [21, 22, 23, 24, 25]

    wide = chat("dev")
    pane = wide.panes["dev"]
    for i in range(1, 40):
        wide.apply(msg(i, room="dev"))
    wide.apply(msg(40, "message 40 " + "word " * 100, room="dev"))
    for i in range(41, 45):
        wide.apply(msg(i, room="dev"))
    view = PaneView(wide, today=lambda: "2026-11-24")
    view.scroll(pane, 9, 30, 10)
    view.scroll(pane, 9, 30, 10)  # deep inside message 40's rows at 30 columns
    before = [text(r) for r in view.frame(pane, 200, 10).rows]  # then the window widens
    view.scroll(pane, 9, 200, 10)
    after = [text(r) for r in view.frame(pane, 200, 10).rows]
    assert after[-1] == before[0]  # a page up from what is shown: no rows skipped


def test_own_actions_do_not_ring_and_a_dm_rename_keeps_both_conversations() -> None:
    state = chat("lobby")
    state.apply(DmEvent(id=1, ts=TS, from_="bob", to="alice", text="secret plans"))
    state.open_dm("robert")
    state.switch("lobby")
    state.bell_pending, state.alerts = False, []
    state.apply(DmEvent(id=2, ts=TS, from_="alice", to="bob", text="waves", action=True))
    assert not state.bell_pending and not state.alerts
    state.apply(JoinEvent(room="lobby", name="bob", ts=TS))
    state.apply(NickEvent(old="bob", new="robert", ts=TS))
    assert "@bob" not in state.panes
    kept = [ln.text for ln in state.panes["@robert"].lines]
    assert kept[:2] == ["secret plans", "waves"] and "bob is now known as robert" in kept


def test_a_quiet_room_that_shrinks_back_is_loud_again() -> None:
    state = ChatState("alice")
    state.apply(Welcome("alice", 1, "s", ["big"], {}, "tok"))
    state.apply(JoinEvent(room="big", name="alice", ts=TS, members=600, quiet=True))
    state.apply(WhoReply(room="big", names=["alice", "bob"], count=2, ref="r1", quiet=True))
    assert state.panes["big"].lines[-1].text.startswith("big has 2 members: the member list")
    state.apply(WhoReply(room="big", names=["alice", "bob", "carol"], count=3))  # unasked
    pane = state.panes["big"]
    assert not pane.quiet and pane.member_names() == ["alice", "bob", "carol"]
    assert pane.lines[-1].text == "big has 3 members: joins and leaves are shown again"
