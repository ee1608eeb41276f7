"""The full-screen app's options: one frozen value, built from defaults, the config file and flags.

Script mode never reads this. ``config.py`` fills it from
``~/.config/chatclient/config.toml`` and ``__main__.py`` lets the command line
win; the app only reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

NotifyMode = Literal["auto", "osc777", "osc9", "notify-send", "off"]
NOTIFY_MODES: tuple[str, ...] = ("auto", "osc777", "osc9", "notify-send", "off")

KeySequence = tuple[str, ...]  # prompt_toolkit key names, as KeyBindings.add(*seq) takes them

# Every action the app binds, with its default keys (prompt_toolkit names:
# "escape", "j" is Alt-J as terminals send it). WeeChat's layout where it has one.
DEFAULT_KEYS: Mapping[str, KeySequence] = MappingProxyType(
    {
        "pane_next": ("c-n",),
        "pane_prev": ("c-p",),
        **{f"pane_{n}": ("escape", str(n)) for n in range(1, 10)},
        "pane_10": ("escape", "0"),
        "pane_jump": ("escape", "j"),  # then two digits: Alt-J 12 goes to pane 12
        "activity": ("escape", "a"),  # the next pane with activity, mentions first
        "page_up": ("pageup",),
        "page_down": ("pagedown",),
        "scroll_top": ("escape", "home"),
        "scroll_live": ("escape", "end"),
        "members": ("f2",),
        "members_up": ("f11",),
        "members_down": ("f12",),
        "filter": ("escape", "="),  # toggle the smart filter
        "mouse": ("escape", "m"),  # toggle mouse capture (to select text with the terminal)
        "search": ("c-r",),
    }
)
KEY_ACTIONS: tuple[str, ...] = tuple(DEFAULT_KEYS)


def _xdg_dir(variable: str, fallback: str) -> Path:
    """An XDG base directory; relative values are invalid by the spec and ignored."""
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def config_home() -> Path:
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "chatclient"


def data_home() -> Path:
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "chatclient"


def state_home() -> Path:
    # Input history is "state" in the XDG sense: worth keeping, not worth backing up.
    return _xdg_dir("XDG_STATE_HOME", ".local/state") / "chatclient"


def default_config_file() -> Path:
    return config_home() / "config.toml"


def default_log_dir() -> Path:
    return data_home() / "logs"


def default_history_file() -> Path:
    return state_home() / "history"


@dataclass(frozen=True)
class TuiSettings:
    bell: bool = True  # ring the terminal bell on a mention or a DM
    bell_interval: float = 10.0  # seconds: at most one bell per interval
    notify: NotifyMode = "auto"  # desktop notifications on a mention or a DM
    notify_interval: float = 30.0  # seconds: per pane, later ones are coalesced into one
    highlight: tuple[str, ...] = ()  # words that count as a mention, besides your own name
    # (matched by state.word_pattern: whole words, any case)
    logs: bool = True
    log_dir: Path = field(default_factory=default_log_dir)
    history_file: Path | None = field(default_factory=default_history_file)  # None: in memory
    history_size: int = 1000
    mouse: bool = True
    smart_filter: bool = True  # hide joins/leaves of people who did not speak recently
    smart_filter_minutes: float = 10.0
    members: bool = True  # show the member list
    scrollback: int = 20_000  # lines kept per pane
    colours: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    keys: Mapping[str, KeySequence] = field(default_factory=lambda: DEFAULT_KEYS)


__all__ = [
    "DEFAULT_KEYS",
    "KEY_ACTIONS",
    "NOTIFY_MODES",
    "KeySequence",
    "NotifyMode",
    "TuiSettings",
    "config_home",
    "data_home",
    "default_config_file",
    "default_history_file",
    "default_log_dir",
    "state_home",
]
