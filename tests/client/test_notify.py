"""The bell and desktop notifications: exact escape sequences, tmux, sanitizing, rate limits,
and notify-send through a fake ``notify-send`` first on PATH."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chatclient.notify import (
    BODY_MAX,
    Notifier,
    choose_mode,
    osc9,
    osc777,
    sanitize,
    tmux_passthrough,
)
from chatclient.settings import TuiSettings

BASE = TuiSettings(bell_interval=10, notify_interval=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def notifier(
    settings: TuiSettings = BASE, env: dict[str, str] | None = None, **kwargs: object
) -> tuple[Notifier, list[str], Clock]:
    out: list[str] = []
    clock = Clock()
    n = Notifier(settings, out.append, clock=clock, env=env or {}, **kwargs)  # type: ignore[arg-type]
    return n, out, clock


def test_escape_sequences_are_exact() -> None:
    assert osc777("dev", "bob: hi") == "\x1b]777;notify;dev;bob: hi\x1b\\"
    assert osc9("dev: bob: hi") == "\x1b]9;dev: bob: hi\x07"
    assert osc9("4 new") == "\x1b]9; 4 new\x07"  # never ConEmu's "9;4" progress command
    assert tmux_passthrough(osc777("t", "b")) == "\x1bPtmux;\x1b\x1b]777;notify;t;b\x1b\x1b\\\x1b\\"


def test_sanitize() -> None:
    assert sanitize("a;b", 50) == "a,b"  # ; would end an OSC field
    hostile = "x\x1b\\\x07\x9c\x1b]0;pwned\x07\u202eevil\n\tend"
    clean = sanitize(hostile, 500)
    assert clean.isprintable() and ";" not in clean
    assert not any(c in clean for c in "\x1b\x07\x9c\u202e")
    assert clean == "x\\e\\\\x07\\x9c\\e]0,pwned\\x07\\u202eevil\\n\\tend"
    long = sanitize("word " * 100, BODY_MAX)
    assert len(long) == BODY_MAX and long.endswith("…")
    assert sanitize("  spaced   out  ", 50) == "spaced out"


def test_the_bell_rings_at_most_once_per_interval() -> None:
    n, out, clock = notifier()
    assert n.bell() is True
    clock.now += 9.9
    assert n.bell() is False
    clock.now += 0.1
    assert n.bell() is True
    assert out == ["\a", "\a"]


def test_no_bell_when_it_is_off() -> None:
    n, out, _ = notifier(replace(BASE, bell=False))
    assert n.bell() is False and out == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("osc777", "\x1b]777;notify;dev;bob: deploy done\x1b\\"),
        ("osc9", "\x1b]9;dev: bob: deploy done\x07"),
    ],
)
def test_notify_writes_the_chosen_osc(mode: str, expected: str) -> None:
    n, out, _ = notifier(replace(BASE, notify=mode))  # type: ignore[arg-type]
    assert n.notify("dev", "bob: deploy done") is True
    assert out == [expected]


def test_inside_tmux_it_is_wrapped() -> None:
    n, out, _ = notifier(replace(BASE, notify="osc777"), env={"TMUX": "/tmp/tmux-0/default,1,0"})
    n.notify("dev", "hi")
    assert out == ["\x1bPtmux;\x1b\x1b]777;notify;dev;hi\x1b\x1b\\\x1b\\"]


def test_hostile_text_cannot_end_the_sequence() -> None:
    n, out, _ = notifier(replace(BASE, notify="osc777"))
    n.notify("dev;x", "\x1b\\\x07;rm -rf\x1b]")
    (sequence,) = out
    inner = sequence.removeprefix("\x1b]777;notify;").removesuffix("\x1b\\")
    assert inner.count(";") == 1  # only the separator of title and body
    assert "\x1b" not in inner and "\x07" not in inner


def test_notifications_are_coalesced_per_pane() -> None:
    n, out, clock = notifier(replace(BASE, notify="osc777"))
    assert n.notify("dev", "bob: one", key="dev") is True
    clock.now += 1
    assert n.notify("dev", "bob: two", key="dev") is False
    assert n.notify("@carol", "carol: hey", key="@carol") is True  # another pane: its own window
    clock.now += 1
    assert n.notify("dev", "bob: three", key="dev") is False
    assert n.flush() == 0  # still inside dev's window
    clock.now += 28
    assert n.flush() == 1
    assert out == [
        "\x1b]777;notify;dev;bob: one\x1b\\",
        "\x1b]777;notify;@carol;carol: hey\x1b\\",
        "\x1b]777;notify;dev;2 new messages, the last: bob: three\x1b\\",
    ]
    assert n.flush() == 0  # nothing left
    clock.now += 30
    assert n.notify("dev", "bob: four", key="dev") is True


def test_a_lone_coalesced_message_goes_out_as_it_was() -> None:
    n, out, clock = notifier(replace(BASE, notify="osc9"))
    n.notify("dev", "one")
    clock.now += 5
    n.notify("dev", "two")
    clock.now += 25
    n.flush()
    assert out[-1] == "\x1b]9;dev: two\x07"


def test_a_late_message_carries_the_pending_count() -> None:
    n, out, clock = notifier(replace(BASE, notify="osc9"))
    n.notify("dev", "one")
    clock.now += 5
    n.notify("dev", "two")
    clock.now += 40  # the timer did not run (no event loop here): the next notify sums up
    assert n.notify("dev", "three") is True
    assert out[-1] == "\x1b]9;dev: 2 new messages, the last: three\x07"


def test_off_sends_nothing() -> None:
    n, out, _ = notifier(replace(BASE, notify="off"))
    assert n.notify("dev", "hi") is False and out == []


def test_a_broken_terminal_never_raises() -> None:
    errors: list[str] = []

    def write(text: str) -> None:
        raise OSError("terminal gone")

    n = Notifier(replace(BASE, notify="osc777"), write, env={}, on_error=errors.append)
    n.bell()
    n.notify("dev", "hi")
    n.notify("other", "hi")
    assert errors == ["cannot write to the terminal: terminal gone"]


@pytest.mark.parametrize(
    ("env", "found", "mode"),
    [
        ({"TERM_PROGRAM": "iTerm.app"}, True, "osc9"),
        ({"LC_TERMINAL": "iTerm2", "SSH_TTY": "/dev/pts/1"}, False, "osc9"),
        ({"TERM": "xterm-kitty"}, True, "osc9"),
        ({"KITTY_WINDOW_ID": "1", "TERM": "tmux-256color"}, True, "osc9"),
        ({"TERM": "foot"}, True, "osc777"),
        ({"TERM": "rxvt-unicode-256color"}, False, "osc777"),
        ({"TERM_PROGRAM": "WezTerm"}, True, "osc777"),
        ({"TERM": "xterm-ghostty"}, True, "osc777"),
        ({"KONSOLE_VERSION": "240801"}, True, "osc777"),
        ({"WT_SESSION": "x"}, False, "osc777"),
        ({"VTE_VERSION": "7600", "DISPLAY": ":0", "TERM": "xterm-256color"}, True, "notify-send"),
        ({"WAYLAND_DISPLAY": "wayland-0", "TERM": "xterm-256color"}, True, "notify-send"),
        (
            {"DISPLAY": ":0", "SSH_CONNECTION": "1 2 3 4", "TERM": "xterm-256color"},
            True,
            "osc777",  # notify-send would pop up on the remote machine
        ),
        ({"DISPLAY": ":0", "TERM": "xterm-256color"}, False, "osc777"),
        ({"TERM_PROGRAM": "Apple_Terminal", "TERM": "xterm-256color"}, False, "off"),
        ({"TERM": "alacritty"}, False, "off"),
        ({"TERM": "linux"}, False, "off"),
        ({}, False, "off"),
        ({"TERM": "xterm-256color"}, False, "osc777"),
    ],
)
def test_auto(env: dict[str, str], found: bool, mode: str) -> None:
    assert choose_mode(env, lambda name: "/usr/bin/notify-send" if found else None) == mode
    n, _, _ = notifier(replace(BASE, notify="auto"), env=env)
    assert n.mode in ("osc9", "osc777", "notify-send", "off")


# ------------------------------------------------------------------ notify-send


def fake_notify_send(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A ``notify-send`` first on PATH that writes its arguments, one per line, to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    script = bin_dir / "notify-send"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write('\\x00'.join(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DISPLAY": ":0"}
    return env, record


def test_notify_send_gets_the_title_and_an_escaped_body(tmp_path: Path) -> None:
    env, record = fake_notify_send(tmp_path)
    n, out, clock = notifier(replace(BASE, notify="notify-send"), env=env)
    assert n.notify("@bob", "bob: <b>5 & 6</b>; --help") is True
    clock.now += 60
    n.notify("-x", "second")
    n.close(wait=10)  # joins the threads that reap the children: no zombies left
    assert out == []  # nothing on the terminal
    calls = [line.split("\x00") for line in record.read_text().splitlines()]
    assert sorted(calls) == sorted(
        [
            ["--app-name=chatclient", "--", "@bob", "bob: &lt;b&gt;5 &amp; 6&lt;/b&gt;, --help"],
            ["--app-name=chatclient", "--", "-x", "second"],  # "--": a title is never an option
        ]
    )
    assert n._reapers == set()


def test_auto_picks_notify_send_on_a_local_desktop(tmp_path: Path) -> None:
    env, _ = fake_notify_send(tmp_path)
    assert choose_mode({**env, "TERM": "xterm-256color"}) == "notify-send"


def test_a_missing_notify_send_turns_notifications_off(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    errors: list[str] = []
    n, out, _ = notifier(
        replace(BASE, notify="notify-send"),
        env={"PATH": str(tmp_path / "empty")},
        on_error=errors.append,
    )
    assert n.notify("dev", "hi") is True  # tried; never raises
    assert n.notify("other", "hi") is False  # off from now on
    assert n.mode == "off"
    assert len(errors) == 1 and errors[0].startswith("desktop notifications off: notify-send")
    assert out == []
