"""TEMPORARY stand-in until the settings module lands (helper)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "pane_next": ("c-n",),
    "pane_prev": ("c-p",),
    **{f"pane_{i}": ("escape", str(i)) for i in range(1, 10)},
    "pane_10": ("escape", "0"),
    "pane_jump": ("escape", "j"),
    "activity": ("escape", "a"),
    "page_up": ("pageup",),
    "page_down": ("pagedown",),
    "scroll_top": ("escape", "home"),
    "scroll_live": ("escape", "end"),
    "members": ("f2",),
    "members_up": ("f11",),
    "members_down": ("f12",),
    "filter": ("escape", "="),
    "mouse": ("escape", "m"),
    "search": ("c-r",),
}


@dataclass(frozen=True)
class TuiSettings:
    bell: bool = True
    bell_interval: float = 10.0
    notify: str = "auto"
    highlight: tuple[str, ...] = ()
    logs: bool = False
    log_dir: Path = Path("/tmp/chatclient-logs")
    history_file: Path | None = None
    history_size: int = 1000
    mouse: bool = True
    smart_filter: bool = True
    smart_filter_minutes: float = 10.0
    members: bool = True
    scrollback: int = 20_000
    colours: dict[str, str] = field(default_factory=dict)
    keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_KEYS))
