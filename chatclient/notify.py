"""The bell and desktop notifications for a mention or a direct message, rate-limited.

Three ways to reach the desktop, as the terminal allows:

- OSC 777 (``ESC ] 777 ; notify ; TITLE ; BODY ST``), from urxvt's notify
  extension: foot, WezTerm, Ghostty, Konsole, kitty 0.24+, Windows Terminal
  (2026 builds), urxvt with the extension; others ignore it.
- OSC 9 (``ESC ] 9 ; TEXT BEL``), iTerm2's: iTerm2, kitty, WezTerm, Ghostty.
  ConEmu reads ``9;<digit>`` as its own commands, so the text never starts
  with a digit.
- ``notify-send`` (libnotify): any Linux desktop, but only on this machine.

Inside tmux an OSC goes in a passthrough (``ESC P tmux; ... ESC \\``, each
ESC doubled), which tmux 3.3+ forwards with ``set -g allow-passthrough on``.
Over ssh the OSCs still work (they travel in the terminal stream);
notify-send would pop up on the remote machine, so "auto" does not pick it
there.

Rate limits: at most one bell per ``bell_interval``; at most one
notification per pane per ``notify_interval``, the rest coalesced into one
("3 new messages in dev") sent when the interval is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chatserver.render import escape

from .settings import TuiSettings

TITLE_MAX = 64  # characters; desktops cut longer titles anyway
BODY_MAX = 200
NOTIFY_SEND_TIMEOUT = 10.0  # seconds before a stuck notify-send (no D-Bus) is killed
NOTIFY_SEND_MAX = 4  # at once; more are dropped rather than piling up processes


def sanitize(text: object, limit: int) -> str:
    """Text fit for a notification: controls and bidi overrides shown escaped, no ``;``, bounded.

    ``;`` separates OSC fields; after ``escape`` no ESC, BEL or C1 ST is left
    to end the sequence early.
    """
    clean = " ".join(escape(text).replace(";", ",").split())
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return clean


def osc777(title: str, body: str) -> str:
    return f"\x1b]777;notify;{title};{body}\x1b\\"


def osc9(text: str) -> str:
    if text[:1].isdigit():
        text = " " + text  # not a ConEmu "9;N" command
    return f"\x1b]9;{text}\x07"


def tmux_passthrough(sequence: str) -> str:
    """Wrap an escape sequence so tmux hands it to the outer terminal."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def choose_mode(
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] | None = None,
) -> str:
    """What "auto" means here: the terminal's own OSC when it is known to show one,
    else notify-send on a local desktop, else OSC 777 unless the terminal is known
    to support neither (then "off": the bell alone)."""
    env = os.environ if env is None else env
    # Looked up on the PATH notify-send will run with.
    find = which or functools.partial(shutil.which, path=env.get("PATH", os.defpath))
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if program == "iTerm.app" or "ITERM_SESSION_ID" in env or env.get("LC_TERMINAL") == "iTerm2":
        return "osc9"  # LC_TERMINAL is how iTerm2 says so over ssh
    if "KITTY_WINDOW_ID" in env or term == "xterm-kitty":
        return "osc9"  # kitty's OSC 777 support is recent; its OSC 9 is old
    if (
        term.startswith(("foot", "rxvt-unicode", "xterm-ghostty", "wezterm"))
        or program in ("WezTerm", "ghostty")
        or any(v in env for v in ("WEZTERM_PANE", "GHOSTTY_RESOURCES_DIR", "KONSOLE_VERSION"))
        or "WT_SESSION" in env
    ):
        return "osc777"
    desktop = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
    remote = env.get("SSH_CONNECTION") or env.get("SSH_TTY")
    if desktop and not remote and find("notify-send"):
        return "notify-send"  # e.g. GNOME Terminal: VTE swallows both OSCs
    if (
        term in ("", "dumb", "linux", "alacritty")
        or program in ("Apple_Terminal", "vscode")
        or "ALACRITTY_WINDOW_ID" in env
    ):
        return "off"
    return "osc777"


@dataclass
class _Pending:
    title: str
    body: str
    count: int = 0


class Notifier:
    """``bell()`` and ``notify(title, body, key)`` for the app; both never raise.

    ``write`` puts raw text on the terminal (``output.write_raw`` then
    ``output.flush``). ``clock`` is for tests; ``env`` too (default:
    ``os.environ``).
    """

    def __init__(
        self,
        settings: TuiSettings,
        write: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.write = write
        self.clock = clock
        self.env = os.environ if env is None else env
        self.on_error = on_error
        mode = settings.notify
        self.mode = choose_mode(self.env) if mode == "auto" else mode
        self.tmux = bool(self.env.get("TMUX"))
        self._last_bell: float | None = None
        self._last_sent: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._children = 0
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self._reapers: set[threading.Thread] = set()

    # ------------------------------------------------------------- public

    def bell(self) -> bool:
        """Ring, unless the bell is off or rang less than ``bell_interval`` ago."""
        if not self.settings.bell:
            return False
        now = self.clock()
        if self._last_bell is not None and now - self._last_bell < self.settings.bell_interval:
            return False
        self._last_bell = now
        self._write("\a")
        return True

    def notify(self, title: str, body: str, key: str | None = None) -> bool:
        """A desktop notification, or coalesced into the next one for ``key`` (default: title).

        True when one went out now.
        """
        if self.mode == "off":
            return False
        key = title if key is None else key
        now = self.clock()
        last = self._last_sent.get(key)
        if last is None or now - last >= self.settings.notify_interval:
            pending = self._pending.pop(key, None)
            if pending is not None:  # the window ended, the timer has not fired yet
                pending.count += 1
                pending.body = body
                title, body = self._summary(pending)
            self._last_sent[key] = now
            self._send(title, body)
            return True
        pending = self._pending.setdefault(key, _Pending(title, body))
        pending.count += 1
        pending.title, pending.body = title, body
        self._schedule(last + self.settings.notify_interval - now)
        return False

    def flush(self) -> int:
        """Send the coalesced notifications whose interval is over; how many went out."""
        self._timer = None
        now = self.clock()
        sent = 0
        for key, pending in list(self._pending.items()):
            last = self._last_sent.get(key)
            if last is not None and now - last < self.settings.notify_interval:
                continue
            del self._pending[key]
            self._last_sent[key] = now
            self._send(*self._summary(pending))
            sent += 1
        if self._pending:
            waits = [
                self._last_sent[k] + self.settings.notify_interval - now for k in self._pending
            ]
            self._schedule(min(waits))
        return sent

    def close(self, wait: float = 0.0) -> None:
        """Drop what is pending; wait up to ``wait`` seconds for notify-send children to end."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        deadline = time.monotonic() + wait
        for reaper in list(self._reapers):
            reaper.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------- internals

    @staticmethod
    def _summary(pending: _Pending) -> tuple[str, str]:
        if pending.count == 1:
            return pending.title, pending.body
        return pending.title, f"{pending.count} new messages, the last: {pending.body}"

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (tests): the caller flushes
        self._timer = loop.call_later(max(0.0, delay), self.flush)

    def _write(self, text: str) -> None:
        try:
            self.write(text)
        except Exception as exc:  # a closed terminal must not take the app down
            self._report(f"cannot write to the terminal: {exc}")

    def _send(self, title: str, body: str) -> None:
        title, body = sanitize(title, TITLE_MAX), sanitize(body, BODY_MAX)
        if self.mode == "notify-send":
            self._notify_send(title, body)
            return
        sequence = osc9(f"{title}: {body}") if self.mode == "osc9" else osc777(title, body)
        self._write(tmux_passthrough(sequence) if self.tmux else sequence)

    def _notify_send(self, title: str, body: str) -> None:
        with self._lock:
            if self._children >= NOTIFY_SEND_MAX:
                return
            self._children += 1
        # The body is markup for most notification daemons.
        markup = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        try:
            child = subprocess.Popen(
                ["notify-send", "--app-name=chatclient", "--", title, markup],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the app is not its signal
                env=dict(self.env),
            )
        except OSError as exc:
            with self._lock:
                self._children -= 1
            self.mode = "off"
            self._report(f"desktop notifications off: notify-send: {exc.strerror or exc}")
            return
        # A thread waits for it, so no zombie is left and the event loop never blocks.
        reaper = threading.Thread(target=self._reap, args=(child,), daemon=True)
        self._reapers.add(reaper)
        reaper.start()

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        try:
            child.wait(NOTIFY_SEND_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                child.kill()
            child.wait()
        finally:
            with self._lock:
                self._children -= 1
            self._reapers.discard(threading.current_thread())

    def _report(self, message: str) -> None:
        if message in self._reported:
            return  # once each: a broken terminal would say so on every message
        self._reported.add(message)
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(message)


__all__ = ["Notifier", "choose_mode", "osc9", "osc777", "sanitize", "tmux_passthrough"]
