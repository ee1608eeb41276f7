"""Pane logs: the format, safe file names, no duplicates across reopening, errors survived."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatclient.logs import PaneLogs, format_line, local_stamp, safe_name, server_dir_name
from chatclient.state import Kind, Line


def msg(n: int, text: str = "", nick: str = "bob", second: int | None = None) -> Line:
    s = n if second is None else second
    return Line(
        Kind.MSG, f"2026-12-02T08:{s // 60:02d}:{s % 60:02d}.000Z", text or f"m{n}", nick, id=n
    )


@pytest.fixture(autouse=True)
def plus_two_hours(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+2 (a POSIX TZ string: no tz database needed)."""
    monkeypatch.setenv("TZ", "XYZ-2")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def message_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("---")]


def test_the_format_is_local_time_with_the_date() -> None:
    ts = "2026-12-02T08:02:03.250Z"
    assert local_stamp(ts) == "2026-12-02 10:02:03"
    assert format_line(Line(Kind.MSG, ts, "hello", "bob")) == "2026-12-02 10:02:03 <bob> hello"
    assert format_line(Line(Kind.OWN, ts, "hi", "alice")) == "2026-12-02 10:02:03 <alice> hi"
    assert format_line(Line(Kind.DM, ts, "psst", "bob")) == "2026-12-02 10:02:03 <bob> psst"
    assert format_line(Line(Kind.ACTION, ts, "waves", "bob")) == "2026-12-02 10:02:03 * bob waves"
    assert (
        format_line(Line(Kind.SYSTEM, ts, "carol joined lobby"))
        == "2026-12-02 10:02:03 -- carol joined lobby"
    )
    assert (
        format_line(Line(Kind.ERROR, ts, "no such user")) == "2026-12-02 10:02:03 !! no such user"
    )
    assert (
        format_line(Line(Kind.GAP, ts, "connection lost"))
        == "2026-12-02 10:02:03 ~~ connection lost"
    )
    presence = Line(Kind.PRESENCE, ts, "carol left lobby", "carol", quiet=True)
    assert format_line(presence) == "2026-12-02 10:02:03 -- carol left lobby"  # filtered: logged
    # The day changes with the local zone, not UTC's.
    assert local_stamp("2026-12-02T23:30:00Z") == "2026-12-03 01:30:00"


def test_control_characters_are_escaped() -> None:
    line = Line(Kind.MSG, "2026-12-02T08:00:00Z", "\x1b[31mred\nfake line\u202e", "b\x07ob")
    out = format_line(line)
    assert out == "2026-12-02 10:00:00 <b\\x07ob> \\e[31mred\\nfake line\\u202e"
    assert out.isprintable()
    assert local_stamp("\x1b]0;junk") == "\\e]0;junk"  # an unparsable ts, shown escaped


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("lobby", "lobby"),
        ("dev-ops_2", "dev-ops_2"),
        ("@bob", "@bob"),
        ("Lobby", "lobby"),  # case-folded: one pane, one file
        ("комната", "комната"),  # other scripts stay readable
        ("a.b", "a.b"),
        (".hidden", "%2Ehidden"),
        ("..", "%2E."),
        ("a/b", "a%2Fb"),
        ("../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd"),
        ("a%2Fb", "a%252fb"),  # % itself is escaped: no two keys meet
        ("x@y", "x%40y"),
        ("a b", "a%20b"),
        ("\x00", "%00"),
        ("", "%"),  # no escape is a lone %: distinct from every other key
        ("[ops]", "%5Bops%5D"),
    ],
)
def test_safe_names(key: str, name: str) -> None:
    assert safe_name(key) == name


def test_long_names_are_bounded_and_still_distinct() -> None:
    a, b = safe_name("日本" * 40 + "a"), safe_name("日本" * 40 + "b")
    assert a != b
    assert len(a.encode()) <= 200 and len(b.encode()) <= 200
    cjk = safe_name("\U00010000" * 32)  # 4 bytes each, escaped to 12 characters
    assert len(cjk.encode()) <= 200


def test_server_dir_names() -> None:
    assert server_dir_name("127.0.0.1:5500") == "127.0.0.1_5500"
    assert server_dir_name("[::1]:5500") == "__1_5500"
    assert server_dir_name("Chat.Example.org:5500") == "chat.example.org_5500"


def test_one_file_per_pane_private(tmp_path: Path) -> None:
    logs = PaneLogs(tmp_path / "logs", "127.0.0.1:5500")
    logs.log("lobby", "lobby", msg(1, "hello"))
    logs.log("@bob", "Bob", Line(Kind.DM, "2026-12-02T08:00:05Z", "psst", "Bob", id=7))
    logs.close()
    lobby = tmp_path / "logs" / "127.0.0.1_5500" / "lobby.log"
    dm = tmp_path / "logs" / "127.0.0.1_5500" / "@bob.log"
    assert message_lines(lobby) == ["2026-12-02 10:00:01 <bob> hello"]
    assert message_lines(dm) == ["2026-12-02 10:00:05 <Bob> psst"]
    header = lobby.read_text().splitlines()[0]
    assert header.startswith("--- log opened ") and header.endswith("(lobby on 127.0.0.1:5500)")
    for directory in (tmp_path / "logs", tmp_path / "logs" / "127.0.0.1_5500"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(lobby.stat().st_mode) == 0o600


def test_nothing_is_written_before_the_first_line(tmp_path: Path) -> None:
    logs = PaneLogs(tmp_path, "h:1")
    logs.close()
    assert list(tmp_path.iterdir()) == []


def test_no_duplicates_within_a_run(tmp_path: Path) -> None:
    logs = PaneLogs(tmp_path, "h:1")
    for n in (1, 2, 3):
        logs.log("lobby", "lobby", msg(n))
    logs.log("lobby", "lobby", msg(2))  # /history shows it again
    logs.log("lobby", "lobby", msg(1))
    logs.log("lobby", "lobby", Line(Kind.SYSTEM, "2026-12-02T08:00:04Z", "dave joined lobby"))
    logs.log("lobby", "lobby", Line(Kind.SYSTEM, "2026-12-02T08:00:05Z", "dave joined lobby"))
    logs.log("lobby", "lobby", msg(6))
    logs.close()
    assert message_lines(logs.path("lobby")) == [
        "2026-12-02 10:00:01 <bob> m1",
        "2026-12-02 10:00:02 <bob> m2",
        "2026-12-02 10:00:03 <bob> m3",
        "2026-12-02 10:00:04 -- dave joined lobby",  # lines without ids are events: all kept
        "2026-12-02 10:00:05 -- dave joined lobby",
        "2026-12-02 10:00:06 <bob> m6",
    ]


def test_no_duplicates_across_a_restart(tmp_path: Path) -> None:
    first = PaneLogs(tmp_path, "h:1")
    for n in (1, 2, 3):
        first.log("lobby", "lobby", msg(n))
    first.close()
    # The next run joins again: the server replays its recent history, then new messages.
    second = PaneLogs(tmp_path, "h:1")
    for n in (1, 2, 3, 4):
        second.log("lobby", "lobby", msg(n))
    second.close()
    assert message_lines(second.path("lobby")) == [
        "2026-12-02 10:00:01 <bob> m1",
        "2026-12-02 10:00:02 <bob> m2",
        "2026-12-02 10:00:03 <bob> m3",
        "2026-12-02 10:00:04 <bob> m4",
    ]
    # A server restarted without its history numbers from 1 again: new text is new.
    third = PaneLogs(tmp_path, "h:1")
    third.log("lobby", "lobby", Line(Kind.MSG, "2026-12-02T09:00:00Z", "after", "bob", id=1))
    third.close()
    assert message_lines(third.path("lobby"))[-1] == "2026-12-02 11:00:00 <bob> after"


def test_the_same_words_at_another_time_are_logged(tmp_path: Path) -> None:
    first = PaneLogs(tmp_path, "h:1")
    first.log("lobby", "lobby", msg(1, "hi"))
    first.close()
    second = PaneLogs(tmp_path, "h:1")
    second.log("lobby", "lobby", msg(2, "hi"))
    second.close()
    assert message_lines(second.path("lobby")) == [
        "2026-12-02 10:00:01 <bob> hi",
        "2026-12-02 10:00:02 <bob> hi",
    ]


def test_a_reconnect_replay_in_the_same_run_is_not_logged(tmp_path: Path) -> None:
    logs = PaneLogs(tmp_path, "h:1")
    for n in (1, 2):
        logs.log("dev", "dev", msg(n))
    logs.log("dev", "dev", Line(Kind.GAP, "2026-12-02T08:00:03Z", "connection lost (eof)"))
    for n in (1, 2, 3):  # the resume's history: 1 and 2 again, 3 missed
        logs.log("dev", "dev", msg(n))
    logs.close()
    assert message_lines(logs.path("dev")) == [
        "2026-12-02 10:00:01 <bob> m1",
        "2026-12-02 10:00:02 <bob> m2",
        "2026-12-02 10:00:03 ~~ connection lost (eof)",
        "2026-12-02 10:00:03 <bob> m3",
    ]


def test_an_unwritable_directory_is_reported_once(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the directory should be\n")
    errors: list[str] = []
    logs = PaneLogs(blocker, "h:1", on_error=errors.append)
    for n in range(1, 4):
        logs.log("lobby", "lobby", msg(n))  # never raises
    logs.log("dev", "dev", msg(1))
    logs.close()
    assert len(errors) == 2  # once per pane
    assert errors[0].startswith("log of lobby stopped: ") and "lobby.log" in errors[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_stops_that_log_only(tmp_path: Path) -> None:
    errors: list[str] = []
    logs = PaneLogs(tmp_path, "h:1", on_error=errors.append)
    logs.dir.mkdir(mode=0o700)
    (logs.dir / "lobby.log").symlink_to("/dev/full")  # every write: ENOSPC
    logs.log("lobby", "lobby", msg(1))
    logs.log("lobby", "lobby", msg(2))
    logs.log("dev", "dev", msg(1))
    logs.close()
    assert errors == [f"log of lobby stopped: no space left on device ({logs.path('lobby')})"]
    assert message_lines(logs.path("dev")) == ["2026-12-02 10:00:01 <bob> m1"]


def test_forget_closes_and_a_pane_can_come_back(tmp_path: Path) -> None:
    logs = PaneLogs(tmp_path, "h:1")
    logs.log("@bob", "bob", msg(1))
    logs.forget("@bob")
    logs.log("@bob", "bob", msg(1))  # reopened: the file's tail knows it
    logs.log("@bob", "bob", msg(2))
    logs.close()
    assert message_lines(logs.path("@bob")) == [
        "2026-12-02 10:00:01 <bob> m1",
        "2026-12-02 10:00:02 <bob> m2",
    ]


def test_a_fifo_in_place_of_a_log_does_not_hang(tmp_path: Path) -> None:
    errors: list[str] = []
    logs = PaneLogs(tmp_path, "h:1", on_error=errors.append)
    logs.dir.mkdir(mode=0o700)
    os.mkfifo(logs.dir / "lobby.log")  # nobody reads it: a blocking open would wait forever
    logs.log("lobby", "lobby", msg(1))
    logs.close()
    assert len(errors) == 1 and errors[0].startswith("log of lobby stopped: ")
