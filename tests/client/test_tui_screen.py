"""The full-screen client as a WeeChat user sees it: each bug of issue 14 on a real terminal.

Every test runs ``python -m chatclient`` in a pseudo-terminal against a real
server and reads the screen back through pyte. Nothing sleeps to
synchronise: every wait is for something on the screen, with a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.client.terminal import Terminal
from tests.helpers import Client, ThreadServer

LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


@pytest.fixture
def terminal() -> Callable[..., Terminal]:
    terminals: list[Terminal] = []

    def start(port: int, *args: str, rows: int = 24, cols: int = 100, **kw: object) -> Terminal:
        term = Terminal(
            "--name", "alice", "--port", str(port), "--no-bell", *args, rows=rows, cols=cols, **kw
        )
        terminals.append(term)
        return term

    yield start
    for term in terminals:
        term.close()


def post(client: Client, texts: list[str], room: str = "lobby") -> None:
    for text in texts:
        client.send({"type": "say", "room": room, "text": text})
    client.expect("msg", text=texts[-1])


def test_pages_by_rows_fetch_older_history_and_never_skip_or_repeat(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Bugs 2, 3 and 9: PageUp moves the view a screen of rows, wrapped lines included,
    fetches older history at the top without duplicates, and /history merges in order."""
    bob = connect("bob")
    texts = [f"message {i}" + (" " + LOREM * 3 if i % 7 == 0 else "") for i in range(1, 161)]
    post(bob, texts)
    term = terminal(server.port, rows=24, cols=80)
    term.wait(lambda s: "message 160" in s, "the backlog")
    term.send("/history 100\r")
    term.wait(lambda s: "[online]" in s, "online")
    term.settle()
    seen: set[int] = set(term.numbers())
    pages = 0
    while 1 not in term.numbers():
        before = term.numbers()
        term.send("pageup")
        term.wait(lambda s, b=before: term.numbers() != b, f"page {pages + 1} to move")
        term.settle(0.2)
        now = term.numbers()
        assert now == sorted(set(now)), f"out of order or twice on one screen: {now}"
        # The rows just above the old view, one row kept: nothing skipped.
        assert min(now) < min(before) and max(now) >= min(before) - 1, (before, now)
        seen.update(now)
        pages += 1
        assert pages < 80, "never reached the first message"
    assert seen == set(range(1, 161))
    assert "more below" in term.status()
    term.send("alt-end")
    term.wait(lambda s: "message 160" in s and "more below" not in term.status(), "live again")
    assert term.quit() == 0


def test_newest_line_sits_at_the_bottom_when_lines_wrap(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Bug 9: no blank rows under the newest message, at 80x24 and at 30x10."""
    bob = connect("bob")
    term = terminal(server.port, rows=24, cols=80)
    term.wait(lambda s: "bob" in term.members(), "bob in the list")
    post(bob, [f"long {i} " + LOREM * 8 + f"end{i}" for i in range(1, 7)])
    term.wait(lambda s: "end6" in s, "the last long message")
    term.settle()
    assert "end6" in term.messages()[-1]
    # Continuation rows start under the text ("HH:MM <bob> " is 12 columns), words whole.
    rows = term.messages()
    last = max(i for i, row in enumerate(rows) if "<bob> long 6" in row)
    for row in rows[last + 1 :]:
        assert row.startswith(" " * 12) and row[12] != " ", rows
        assert row.rstrip().split(" ")[-1] in [*LOREM.split(), "end6"], row
    term.resize(10, 30)
    term.wait(lambda s: "end6" in term.messages()[-1] and term.rows()[0].strip(), "30x10 redrawn")
    assert all(row.strip() for row in term.messages()), term.text()  # full of text, no holes
    assert not any("│" in row for row in term.rows()[1:-2])  # no member list at 30 columns
    assert term.quit() == 0


def test_input_line_keys_and_long_texts(
    make_server: Callable[..., ThreadServer], terminal: Callable[..., Terminal]
) -> None:
    """Bugs 4-7 and feature 7: the prompt survives a long line, Alt-0 and Alt-- eat nothing,
    End ends the line, Ctrl-C clears then quits, long texts are split when asked."""
    server = make_server(msg_rate=0, max_text=100)
    bob = Client(server.port)
    bob.hello("bob")
    try:
        term = terminal(server.port, rows=24, cols=80)
        term.wait(lambda s: "bob" in term.members(), "online with bob")
        long_line = "x" * 90
        term.send(long_line)
        term.wait(lambda s: "[lobby] " in s and long_line[-20:] in s, "the long input, wrapped")
        term.send("\r")
        assert bob.expect("msg")["text"] == long_line
        term.wait(lambda s: term.rows()[-1].startswith("[lobby] "), "the prompt back")

        term.send("\x1b0", "/query bob\r")  # Alt-0: pane 10, which does not exist
        term.wait(lambda s: "2:@bob" in term.rows()[0], "the DM tab")
        term.send("\x1b-", "hi\r")  # Alt--: no repeat count eats the h
        assert bob.expect("dm")["text"] == "hi"

        term.send("abc", "\x01", "end", "d")  # Ctrl-A, End, then d at the end
        term.wait(lambda s: "[@bob] abcd" in term.rows()[-1], "End at the end of the line")
        term.send("ctrl-c")
        term.wait(lambda s: term.rows()[-1].rstrip() == "[@bob]", "Ctrl-C clears the line")
        term.send("ctrl-c")
        term.wait(lambda s: "Ctrl-C again" in term.status(), "the quit hint")
        assert term.child.isalive()

        words = " ".join(f"w{i:03d}" for i in range(50))  # 249 bytes: three messages of <=100
        term.send(words, "\r")
        term.wait(lambda s: "send it as 3 messages" in term.status(), "the split question")
        term.send("y")
        got = [bob.expect("dm")["text"] for _ in range(3)]
        assert " ".join(got) == words and all(len(t) <= 100 for t in got)

        term.send("ctrl-c")
        term.wait(lambda s: "Ctrl-C again" in term.status(), "the quit hint again")
        term.send("ctrl-c")
        term.child.expect(pexpect.EOF, timeout=5)
        term.child.close()
        assert term.child.exitstatus == 0
    finally:
        bob.close()


def test_panes_newcomer_dm_tabs_and_no_room_left(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Bugs 8, 11, 12: a greeting, @ on DM tabs, and a real hint once every room is left."""
    dan = connect("dan", rooms=["lobby", "dan"])
    term = terminal(server.port)
    screen = term.wait(lambda s: "you joined lobby" in s, "the join line")
    assert "/help" in screen
    term.send("/join dan\r")
    term.wait(lambda s: "2:dan" in term.rows()[0], "the room dan")
    dan.send({"type": "dm", "to": "alice", "text": "psst"})
    term.wait(lambda s: "3:@dan" in term.rows()[0], "the DM tab named @dan")
    assert "act: 3:@dan" in term.status()
    term.send("/leave dan\r", "/leave lobby\r")
    term.wait(lambda s: term.rows()[0].strip().startswith("1:@dan"), "the rooms left")
    term.send("/close\r")
    term.wait(lambda s: "no room open: /join ROOM" in s, "the hint")
    term.send("anyone?\r")
    screen = term.wait(lambda s: "in no room" in s, "the answer to text with no room")
    assert "not in status" not in screen
    term.send("/join lobby\r")
    term.wait(lambda s: "1:lobby" in term.rows()[0], "back in a room")
    assert term.quit() == 0


def test_joiners_and_scripts_are_drawn_not_escaped(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Bug 10: joiners shape text; only what can forge or hide text is escaped."""
    bob = connect("bob")
    term = terminal(server.port)
    term.wait(lambda s: "bob" in term.members(), "bob in the list")
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    post(bob, [f"one {family} two {persian} three so\u00adft four \u202eevil five"])
    # pyte cannot draw joiners, so this reads what the client wrote to the terminal.
    term.wait(lambda s: b"five" in term.raw, "the message")
    assert b"\\u{200" not in term.raw and b"\\u{ad}" not in term.raw
    assert family.encode() in term.raw and persian.encode() in term.raw
    assert "so\u00adft".encode() in term.raw
    assert b"\\u202eevil" in term.raw and "\u202e".encode() not in term.raw  # shown, not obeyed
    assert term.quit() == 0


def test_read_marker_activity_list_and_alt_a(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Feature 1: the marker where the pane was left, the activity list, Alt-A's order."""
    bob = connect("bob", rooms=["lobby", "dev"])
    term = terminal(server.port, "--room", "lobby", "--room", "dev")
    term.wait(lambda s: "2:dev" in term.rows()[0] and "bob" in term.members(), "both rooms")
    post(bob, ["seen before"])
    term.wait(lambda s: "seen before" in s, "the first line")
    term.send("\x1b2")  # to dev: lobby is left here
    post(bob, ["new one", "new two"])
    post(bob, ["in dev"], room="dev")
    term.wait(lambda s: "act: 1:lobby(2)" in term.status(), "lobby in the activity list")
    bob.send({"type": "dm", "to": "alice", "text": "ping"})
    term.wait(lambda s: "act: 3:@bob(1) 1:lobby(2)" in term.status(), "the DM first")
    term.send("\x1ba")
    term.wait(lambda s: "[@bob]" in term.rows()[-1], "Alt-A to the DM")
    term.send("\x1ba")
    screen = term.wait(lambda s: "[lobby]" in term.rows()[-1], "Alt-A to lobby")
    rows = term.messages()
    marker = next(i for i, row in enumerate(rows) if row.strip().startswith("────"))
    assert "seen before" in rows[marker - 1] and "new one" in rows[marker + 1], screen
    term.send("\x1ba")
    term.wait(lambda s: "[@bob]" in term.rows()[-1] or "[dev]" in term.rows()[-1], "back")
    assert term.quit() == 0


def test_tab_bar_scrolls_to_keep_the_current_tab_and_shows_hidden_news(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    rooms = [f"room{i:02d}" for i in range(1, 16)]
    bob = connect("bob", rooms=rooms)
    args = [a for room in rooms for a in ("--room", room)]
    term = terminal(server.port, *args, cols=60)
    term.wait(lambda s: "1:room01" in term.rows()[0] and "»" in term.rows()[0], "cut tabs")
    term.send("\x1b0")  # Alt-0: pane 10
    term.wait(lambda s: term.rows()[-1].startswith("[room10]"), "pane 10")
    term.send("\x1bj", "1", "4")  # Alt-J 14
    term.wait(lambda s: "14:room14" in term.rows()[0] and "«" in term.rows()[0], "tab 14")
    post(bob, ["alice: look"], room="room01")
    term.wait(lambda s: "!" in term.rows()[0].split("14:room14")[0], "the hidden mention")
    assert term.quit() == 0


def test_join_leave_noise_is_filtered_in_big_rooms(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Feature 5: in a room of more than 20, joins and leaves of the silent are hidden."""
    crowd = [connect(f"c{i}") for i in range(21)]
    term = terminal(server.port)
    term.wait(lambda s: "22 here" in s, "the crowd")
    talker = crowd[0]
    post(talker, ["i talk"])
    term.wait(lambda s: "i talk" in s, "c0 talks")
    connect("quietone")
    crowd[1].send({"type": "quit"})
    talker.send({"type": "quit"})
    term.wait(lambda s: "c0 left lobby" in s, "the talker's leave shown")
    screen = term.settle()
    assert "quietone joined" not in screen and "c1 left" not in screen
    term.send("\x1b=")  # Alt-=: the filter off
    term.wait(lambda s: "quietone joined" in s and "c1 left" in s, "every join and leave")
    assert "filter off" in term.status()
    assert term.quit() == 0


def test_find_in_the_pane(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """Feature 2: /find and Ctrl-R scroll back to the newest match above the view."""
    bob = connect("bob")
    post(bob, [f"line {i}" + (" needle" if i in (5, 40) else "") for i in range(1, 120)])
    term = terminal(server.port)
    term.wait(lambda s: "line 119" in s, "the backlog")
    term.send("/history 200\r")
    term.settle()
    term.send("ctrl-r", "needle")
    term.wait(lambda s: "line 40 needle" in s and "more below" in term.status(), "match 40")
    term.send("ctrl-r")
    term.wait(lambda s: "line 5 needle" in s, "the older match")
    term.send("esc")
    term.wait(lambda s: "line 119" in s and "more below" not in term.status(), "back")
    term.send("/find line 5 needle\r")
    term.wait(lambda s: "line 5 needle" in s, "/find")
    assert term.quit() == 0


def test_tab_menu_member_scrolling_and_mouse_toggle(
    server: ThreadServer, connect: Callable[..., Client], terminal: Callable[..., Terminal]
) -> None:
    """A menu for an ambiguous Tab, the member list scrolls, Alt-M frees the mouse."""
    crowd = [connect(f"m{i:02d}") for i in range(30)]
    carol, charlie = connect("carol"), connect("charlie")
    term = terminal(server.port)
    term.wait(lambda s: "33 here" in s and "+14 more" in s, "a long member list")
    assert "m29" not in term.members()
    term.send("f12")
    term.wait(lambda s: "m29" in term.members(), "the end of the list")
    post(charlie, ["hi"])
    term.wait(lambda s: "<charlie> hi" in s, "charlie speaks")
    term.send("c", "tab")  # ambiguous: a menu, the last speaker first
    term.wait(lambda s: "charlie" in term.rows()[-3] or "charlie" in s.split("\n")[-4], "menu")
    term.wait(lambda s: term.rows()[-1].startswith("[lobby] charlie: "), "charlie first")
    term.send("ctrl-u")
    assert b"\x1b[?1000h" in term.raw
    term.send("\x1bm")
    term.wait(lambda s: b"\x1b[?1000l" in term.raw and "mouse off" in term.status(), "mouse off")
    assert len(crowd) == 30 and carol
    assert term.quit() == 0


def test_reconnect_now_after_a_restart(
    make_server: Callable[..., ThreadServer], terminal: Callable[..., Terminal]
) -> None:
    """/reconnect skips the backoff wait; the bar says when the next try is, and no stale lag."""
    first = make_server(msg_rate=0)
    port = first.port
    term = terminal(port)
    term.wait(lambda s: "[online]" in s and "lag" in term.status(), "online")
    first.stop()
    wait: list[float] = []

    def waiting_long(s: str) -> bool:
        found = re.search(r"retrying in (\d+\.\d) s", term.status())
        wait[:] = [float(found.group(1))] if found else []
        return bool(wait) and wait[0] >= 1.5

    term.wait(waiting_long, "a long backoff wait", timeout=20)
    assert "lag" not in term.status() and "/reconnect" in term.status()
    make_server(msg_rate=0, port=port)
    term.send("/reconnect\r")
    # Online well before the backoff wait would have ended.
    term.wait(lambda s: "[online]" in term.status(), "online at once", timeout=wait[0] - 0.4)
    assert term.quit() == 0


def test_config_highlight_notify_logs_and_history_across_a_restart(
    server: ThreadServer, connect: Callable[..., Client], tmp_path: Path
) -> None:
    """Features 3, 4, 6: the config file's highlight word notifies (OSC 777); each pane has a
    log on disk that a restart does not repeat; the input history survives the restart."""
    config = tmp_path / ".config/chatclient/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[ui]\nhighlight = ["deploy"]\nnotify = "osc777"\n')
    bob = connect("bob")
    args = ("--name", "alice", "--port", str(server.port))
    term = Terminal(*args, home=tmp_path)
    try:
        term.wait(lambda s: "bob" in term.members(), "online with bob")
        post(bob, ["the deploy is done"])
        term.wait(lambda s: b"\x1b]777;notify;lobby;" in term.raw, "the notification")
        assert b"the deploy is done" in term.raw.split(b"\x1b]777;notify;lobby;", 1)[1]
        term.wait(lambda s: b"\x07" in term.raw.split(b"\x1b]777;notify;", 1)[1], "the bell")
        term.send("hello log\r")
        assert bob.expect("msg")["text"] == "hello log"
        term.wait(lambda s: "<alice> hello log" in s, "our line")
        assert term.quit() == 0
    finally:
        term.close()
    log = tmp_path / f".local/share/chatclient/logs/127.0.0.1_{server.port}/lobby.log"
    first = log.read_text().splitlines()
    assert any(line.endswith("<bob> the deploy is done") for line in first)
    assert any(line.endswith("<alice> hello log") for line in first)

    again = Terminal(*args, home=tmp_path)
    try:
        again.wait(lambda s: "hello log" in s, "the backlog")
        again.send("\x1b[A", "\x1b[A")  # Up, Up: past /quit, the line typed before
        again.wait(lambda s: again.rows()[-1].startswith("[lobby] hello log"), "the history")
        again.send("ctrl-u")
        assert again.quit() == 0
    finally:
        again.close()
    messages = [line for line in log.read_text().splitlines() if "<" in line]
    assert len(messages) == len(set(messages)) == 2  # the replayed backlog is not logged again


def test_a_big_quiet_room_shows_its_count_and_lists_on_demand(
    make_server: Callable[..., ThreadServer], terminal: Callable[..., Terminal]
) -> None:
    """Issue 15's quiet rooms as the terminal shows them: the count, one line saying why
    joins and leaves are missing, and /who filling the member list."""
    server = make_server(msg_rate=0, quiet_room_size=5)
    crowd = [Client(server.port) for _ in range(6)]
    try:
        for i, client in enumerate(crowd):
            client.hello(f"p{i}")
        term = terminal(server.port)
        term.wait(lambda s: "is a big room (7 members)" in s, "the big-room line")
        assert "(7, big)" in term.status()
        assert "p3" not in term.members()  # no list until asked for
        crowd[0].send({"type": "say", "text": "from the crowd"})
        term.wait(lambda s: "p0" in term.members(), "a speaker listed")
        term.send("/who\r")
        term.wait(lambda s: all(f"p{i}" in term.members() for i in range(6)), "the whole list")
        assert "member list shows them" in term.text()
        assert term.quit() == 0
    finally:
        for client in crowd:
            client.close()
