"""Input history on disk: password lines never kept, survives a restart, bounded, private."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import ThreadedHistory

from chatclient.history import ChatHistory, is_secret


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("/register hunter22", True),
        ("/REGISTER hunter22", True),
        ("/passwd old new", True),
        ("/unregister hunter22", True),
        ("/register", True),
        ("/join secret-room KEY", True),
        ("/j secret-room KEY", True),
        ("/mode +k KEY", True),
        ("/mode +ik KEY", True),
        ("/mode -k", False),
        ("/mode +m", False),
        ("/join dev", False),
        ("/msg bob my password is hunter22", False),  # sent in clear to bob anyway
        ("//register hunter22", False),  # says "/register hunter22" to the room
        ("register hunter22", False),
        ("/quit", False),
        ("hello", False),
    ],
)
def test_which_lines_are_secret(line: str, secret: bool) -> None:
    assert is_secret(line) is secret


def reload(path: Path, size: int = 1000) -> list[str]:
    """What a new run's Up key walks through, oldest first (prompt_toolkit's own load)."""
    history = ChatHistory(path, size)

    async def load() -> list[str]:
        return [item async for item in history.load()]

    return list(reversed(asyncio.run(load())))


def test_survives_a_restart_without_passwords(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history"
    history = ChatHistory(path)
    for line in ("hello", "/register hunter22", "/join dev", "/passwd hunter22 better-one"):
        history.append_string(line)
    assert history.get_strings() == ["hello", "/join dev"]  # not even in memory
    assert reload(path) == ["hello", "/join dev"]
    text = path.read_text()
    assert "hunter22" not in text and "better-one" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_through_a_prompt_toolkit_buffer(tmp_path: Path) -> None:
    path = tmp_path / "history"
    buffer = Buffer(history=ChatHistory(path))
    for line in ("first", "/unregister hunter22", "second"):
        buffer.text = line
        buffer.append_to_history()  # what Enter does
    assert reload(path) == ["first", "second"]


def test_bounded_on_load_and_compacted(tmp_path: Path) -> None:
    path = tmp_path / "history"
    history = ChatHistory(path, size=10)
    for n in range(25):
        history.append_string(f"line {n}")
    assert len(history.get_strings()) == 10  # memory is bounded too
    assert reload(path, size=10) == [f"line {n}" for n in range(15, 25)]
    # 25 >= 2 x 10: that load rewrote the file down to 10 entries, still readable.
    assert path.read_text().count("\n+") == 10
    assert reload(path, size=100) == [f"line {n}" for n in range(15, 25)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_password_lines_written_by_hand_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "history"
    path.write_text("\n# old\n+/register hunter22\n\n# old\n+hello\n")
    assert reload(path) == ["hello"]


def test_none_keeps_it_in_memory(tmp_path: Path) -> None:
    history = ChatHistory(None)
    history.append_string("hello")
    history.append_string("/passwd a b")
    assert history.get_strings() == ["hello"]
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_file_is_reported_once(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be\n")
    errors: list[str] = []
    history = ChatHistory(blocker / "history", on_error=errors.append)
    history.append_string("one")
    history.append_string("two")
    assert history.get_strings() == ["one", "two"]  # still there for Up
    assert len(errors) == 1 and errors[0].startswith("input history not saved: ")


def test_wrapped_in_threaded_history_it_still_keeps_no_password(tmp_path: Path) -> None:
    path = tmp_path / "history"
    threaded = ThreadedHistory(ChatHistory(path))
    threaded.append_string("/register hunter22")
    threaded.append_string("hello")
    assert "hunter22" not in path.read_text()
    assert reload(path) == ["hello"]
