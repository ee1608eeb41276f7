"""The UI-independent parts of the client: the chat model, resume bookkeeping, backoff."""

from __future__ import annotations

import random

from chatclient.render import line_fragments, local_clock, nick_colour
from chatclient.session import SessionConfig, Tracker, backoff_delays
from chatclient.state import ChatState, Kind, Line, dm_key
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


def msg(id_: int, text: str, who: str = "bob", room: str = "lobby", ts: str = TS) -> MsgEvent:
    return MsgEvent(id=id_, ts=ts, room=room, from_=who, text=text)


def joined(state: ChatState, *rooms: str) -> ChatState:
    state.apply(Welcome("alice", 1, "s", list(rooms), {}, "tok"))
    for room in rooms:
        state.apply(JoinEvent(room=room, name="alice", ts=TS))
        state.apply(HistoryReply(room=room, messages=[], more=False))
    return state


def test_rooms_unread_and_switching() -> None:
    state = joined(ChatState("alice"), "lobby", "dev")
    assert state.order() == ["lobby", "dev"] and state.current == "lobby"
    state.apply(msg(1, "in dev", room="dev"))
    state.apply(msg(2, "in dev again", room="dev"))
    state.apply(msg(3, "here", room="lobby"))
    assert state.panes["dev"].unread == 2 and state.panes["lobby"].unread == 0
    assert state.switch_index(1) and state.current == "dev"
    assert state.panes["dev"].unread == 0
    assert state.switch_relative(1) and state.current == "lobby"
    assert state.switch_relative(-1) and state.current == "dev"
    assert not state.switch_index(5)
    # Each room keeps its own scrollback.
    assert [ln.text for ln in state.panes["dev"].lines if ln.kind is Kind.MSG] == [
        "in dev",
        "in dev again",
    ]


def test_mentions_mark_the_room_and_ring() -> None:
    state = joined(ChatState("alice"), "lobby", "dev")
    state.apply(msg(1, "hey ALICE, look", room="dev"))
    assert state.panes["dev"].mentioned and state.bell_pending
    assert state.panes["dev"].lines[-1].mention
    state.bell_pending = False
    state.apply(msg(2, "malice is not a mention", room="dev"))
    assert not state.bell_pending and not state.panes["dev"].lines[-1].mention
    state.apply(msg(3, "alice talks to herself", who="alice", room="dev"))
    assert state.panes["dev"].lines[-1].kind is Kind.OWN and not state.bell_pending


def test_initial_backlog_is_not_unread_but_a_resume_is() -> None:
    state = ChatState("alice")
    state.apply(Welcome("alice", 1, "s", ["lobby", "dev"], {}, "tok"))
    state.apply(JoinEvent(room="dev", name="alice", ts=TS))
    state.apply(HistoryReply(room="dev", messages=[msg(1, "old", room="dev")], more=False))
    assert state.panes["dev"].unread == 0
    state.apply(
        HistoryReply(
            room="dev",
            messages=[msg(5, "missed", room="dev", ts="2026-11-24T10:05:00.000Z")],
            more=False,
        )
    )
    assert state.panes["dev"].unread == 1


def test_members_follow_join_leave_nick() -> None:
    state = joined(ChatState("alice"), "lobby")
    state.quiet_refs.add("w1")
    state.apply(WhoReply(room="lobby", names=["alice", "bob"], ref="w1"))
    pane = state.panes["lobby"]
    assert pane.member_names() == ["alice", "bob"]
    assert not any("bob" in ln.text for ln in pane.lines)  # the quiet who printed nothing
    state.apply(JoinEvent(room="lobby", name="Carol", ts=TS))
    state.apply(NickEvent(old="bob", new="robert", ts=TS))
    assert pane.member_names() == ["alice", "Carol", "robert"]
    state.apply(LeaveEvent(room="lobby", name="carol", ts=TS, reason="bye"))
    assert pane.member_names() == ["alice", "robert"]
    assert pane.lines[-1].text == "carol left lobby (bye)"


def test_own_nick_change_and_leaving_a_room() -> None:
    state = joined(ChatState("alice"), "lobby", "dev")
    state.apply(NickEvent(old="alice", new="al", ts=TS))
    assert state.me == "al" and state.mentions_me("hi al")
    state.switch("dev")
    state.apply(LeaveEvent(room="dev", name="al", ts=TS))
    assert "dev" not in state.panes and state.current == "lobby"


def test_direct_messages_get_a_pane_per_person() -> None:
    state = joined(ChatState("alice"), "lobby")
    state.apply(DmEvent(id=7, ts=TS, from_="Bob", to="alice", text="psst"))
    state.apply(DmEvent(id=8, ts=TS, from_="alice", to="Bob", text="yes?"))
    pane = state.panes[dm_key("bob")]
    assert pane.is_dm and pane.title == "Bob" and pane.unread == 1 and pane.mentioned
    assert [ln.kind for ln in pane.lines] == [Kind.DM, Kind.OWN]
    state.apply(NickEvent(old="Bob", new="bobby", ts=TS))
    assert dm_key("bobby") in state.panes and dm_key("bob") not in state.panes


def test_completion_of_nicks_and_commands() -> None:
    state = joined(ChatState("alice"), "lobby")
    state.apply(WhoReply(room="lobby", names=["alice", "bob", "Bobby", "carol"]))
    assert state.completions("/jo") == ["/join "]
    assert "/clear " in state.completions("/cl")
    assert state.completions("bo") == ["bob: ", "Bobby: "]
    assert state.completions("hi BO") == ["bob ", "Bobby "]
    assert state.completions("al") == []  # never yourself
    state.apply(msg(1, "hello", who="Bobby"))
    assert state.completions("bo") == ["Bobby: ", "bob: "]  # the last speaker first


def test_backfill_goes_on_top_and_gaps_are_marked() -> None:
    state = joined(ChatState("alice"), "lobby")
    state.apply(msg(10, "new", ts="2026-11-24T10:00:10.000Z"))
    state.apply(
        HistoryReply(
            room="lobby", messages=[msg(3, "older", ts="2026-11-24T09:00:00.000Z")], more=True
        )
    )
    texts = [ln.text for ln in state.panes["lobby"].lines if ln.kind is Kind.MSG]
    assert texts == ["older", "new"]
    state.connection("online")
    state.connection("offline", "connection lost")
    state.connection("online")
    gaps = [ln.text for ln in state.panes["lobby"].lines if ln.kind is Kind.GAP]
    assert gaps == ["connection lost (connection lost)", "reconnected; what was missed follows"]


def test_scroll_holds_still_while_reading_back() -> None:
    state = joined(ChatState("alice"), "lobby")
    pane = state.panes["lobby"]
    for i in range(1, 6):
        state.apply(msg(i, "x"))
    pane.anchor = (2, 1)
    state.apply(msg(6, "x"))
    assert pane.anchor == (3, 1)


def test_tracker_resumes_and_drops_duplicates() -> None:
    tracker = Tracker(name="alice")
    config = SessionConfig(name="alice", rooms=("lobby",))
    assert tracker.hello(config).since == {}
    tracker.filter(Welcome("alice", 1, "s", ["lobby"], {}, "tok1"))
    assert tracker.filter(msg(4, "a")) is not None
    assert tracker.filter(msg(4, "a")) is None  # seen: dropped
    tracker.filter(JoinEvent(room="dev", name="alice", ts=TS))
    hello = tracker.hello(config)
    assert hello.session == "tok1" and hello.rooms == ("lobby", "dev")
    assert hello.since == {"lobby": 4}
    # A replay holding a seen and an unseen message keeps only the new one.
    replay = tracker.filter(HistoryReply("lobby", [msg(4, "a"), msg(5, "b")], False))
    assert isinstance(replay, HistoryReply) and [m.id for m in replay.messages] == [5]
    # Our own history request (backfill) neither moves the resume point nor repeats.
    tracker.backfill_refs.add("h1")
    assert tracker.filter(HistoryReply("lobby", [msg(5, "b")], False, ref="h1")) is None
    # A restarted in-memory server renumbers from 1: different ts, so it is news.
    fresh = msg(1, "after restart", ts="2026-11-24T11:00:00.000Z")
    assert tracker.filter(fresh) is not None
    assert tracker.hello(config).since["lobby"] == 1
    tracker.filter(NickEvent(old="alice", new="al", ts=TS))
    assert tracker.hello(config).name == "al"


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    delays = backoff_delays(0.5, 8.0, random.Random(1))
    got = [next(delays) for _ in range(8)]
    for attempt, delay in enumerate(got):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(got)) == len(got)  # jittered, not a fixed ladder


def test_drawing_escapes_and_colours() -> None:
    assert nick_colour("Bob") == nick_colour("bob")
    assert len({nick_colour(n) for n in ("a", "b", "c", "d", "e", "f", "g")}) > 2
    assert len(local_clock(TS)) == 5 and ":" in local_clock(TS)
    line = Line(Kind.MSG, TS, "evil \x1b[2J text", "bob\x07")
    drawn = "".join(text for _, text in line_fragments(line))
    assert "\x1b" not in drawn and "\x07" not in drawn and "\\e[2J" in drawn


def test_a_history_that_cannot_be_proven_whole_says_so() -> None:
    state = joined(ChatState("alice"), "lobby")
    state.apply(HistoryReply(room="lobby", messages=[msg(7, "after the gap")], more=False))
    assert not [line for line in state.panes["lobby"].lines if "missing" in line.text]
    state.apply(HistoryReply(room="lobby", messages=[], more=False, gap=True))
    warned = [line for line in state.panes["lobby"].lines if "missing" in line.text]
    assert len(warned) == 1 and warned[0].kind is Kind.ERROR
