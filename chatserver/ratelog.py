"""Logging a failure that repeats without flooding the log.

Two ways, for two kinds of repetition: :class:`Throttle` for a failure that
goes on (a disk that cannot be written, a damaged page), from any thread, the
lines left out counted in the next one; :class:`RateLimitedLog` for a flood
of events on the event loop (refused connections), summed up by a timer once
the flood is over, so its last line is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

log = logging.getLogger("chatserver")

LOG_EVERY = 60.0  # seconds between two log lines about one ongoing failure


class Throttle:
    """One kind of failure in the log: the first at once, then at most one
    line an ``every`` seconds, saying how many were left out. Safe from any
    thread (the store's checkpoint thread logs through one)."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._mutex = threading.Lock()
        self._next = 0.0  # time.monotonic() before which lines are left out
        self._left_out = 0
        self._active = False

    def log(self, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._mutex:
            self._active = True
            if now < self._next:
                self._left_out += 1
                return
            left_out, self._left_out = self._left_out, 0
            self._next = now + self.every
        if left_out:
            msg += f" ({left_out} more since the last such line)"
        log.log(level, msg, *args)

    def reset(self) -> bool:
        """The failure is over: the next one is logged at once. Whether it was on."""
        with self._mutex:
            active, self._active = self._active, False
            self._next, self._left_out = 0.0, 0
        return active


class RateLimitedLog:
    """The first occurrence of something logged at once, later ones summed up.

    At most one line per ``interval``: a flood of refused connections must not
    become a flood of log lines (and of disk writes).
    """

    def __init__(self, level: int, what: str, interval: float = 10.0) -> None:
        self.level = level
        self.what = what  # "connections refused": the summary counts these
        self.interval = interval
        self._quiet_until = 0.0
        self._held = 0
        self._last = ""
        self._flush: asyncio.TimerHandle | None = None

    def note(self, message: str) -> None:
        now = time.monotonic()
        if now >= self._quiet_until and self._flush is None:
            log.log(self.level, "%s", message)
            self._quiet_until = now + self.interval
            return
        self._held += 1
        self._last = message
        if self._flush is None:
            delay = max(0.0, self._quiet_until - now)
            self._flush = asyncio.get_running_loop().call_later(delay, self._say_held)

    def _say_held(self) -> None:
        self._flush = None
        if self._held:
            log.log(
                self.level,
                "%d more %s in the last %.0f s; the last: %s",
                self._held,
                self.what,
                self.interval,
                self._last,
            )
            self._held = 0
            self._quiet_until = time.monotonic() + self.interval

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._say_held()
