"""The feeder: one framed-JSON connection that fills the client's rooms.

A thread reads everything the server sends it (its own echoes included: a
sender that stops reading is cut as a slow consumer) and notes who joined.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time

from chatserver.protocol import FrameDecoder, encode_frame

from .terminal import tag

WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "chat", "room", "server",
    "client", "message", "latency", "screen", "render", "pane", "line", "wrap", "scroll",
    "window", "terminal", "input", "key",
)  # fmt: skip


class Texts:
    """Message texts, lowercase words only (the bench's letters are uppercase):
    most short, one in four long enough to wrap over several rows."""

    def __init__(self, seed: int = 14) -> None:
        self._rng = random.Random(seed)

    def next(self) -> str:
        rng = self._rng
        size = rng.randint(150, 420) if rng.random() < 0.25 else rng.randint(8, 70)
        words: list[str] = []
        length = 0
        while length < size:
            words.append(rng.choice(WORDS))
            length += len(words[-1]) + 1
        return " ".join(words)


class Feeder:
    def __init__(
        self, host: str, port: int, *, name: str = "feeder", rooms: tuple[str, ...] = ()
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = FrameDecoder(max_frame=1 << 30)
        self._cond = threading.Condition()
        self.joined: set[tuple[str, str]] = set()  # (room, name) of join events seen
        self.closed = ""
        self.texts = Texts()
        self._tags = 0
        hello = {"type": "hello", "name": name, "proto": 1, "rooms": list(rooms) or ["lobby"]}
        self._send([hello])
        self._welcome()
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _send(self, messages: list[dict[str, object]]) -> None:
        self.sock.sendall(b"".join(encode_frame(json.dumps(m).encode()) for m in messages))

    def _welcome(self) -> None:
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                raise RuntimeError("the server closed the feeder's connection")
            for payload in self._decoder.feed(data):
                event = json.loads(payload) if payload else {}
                if event.get("type") == "welcome":
                    return
                if event.get("type") == "error":
                    raise RuntimeError(f"the server refused the feeder: {event}")

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 18)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self.closed = self.closed or "closed"
                    self._cond.notify_all()
                return
            for payload in self._decoder.feed(data):
                # Only joins matter; skip parsing the flood of echoes.
                if b'"join"' not in payload and b'"bye"' not in payload:
                    continue
                event = json.loads(payload)
                with self._cond:
                    if event.get("type") == "join":
                        self.joined.add((event["room"], event["name"].casefold()))
                    elif event.get("type") == "bye":
                        self.closed = f"bye {event.get('reason')}"
                    self._cond.notify_all()

    def wait_join(self, room: str, name: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: (room, name.casefold()) in self.joined, timeout)

    def new_tag(self) -> int:
        """The next tag number (one sequence for the whole run: every tag is unique)."""
        self._tags += 1
        return self._tags

    def say(self, room: str, texts: list[str]) -> None:
        self._send([{"type": "say", "room": room, "text": t} for t in texts])

    def tagged(self, n: int, text: str = "") -> str:
        """A text the bench can spot on screen: the tag first, at a fixed column."""
        return f"{tag(n)} {text or self.texts.next()}"

    def stream(
        self, room: str, rate: float, duration: float, every: int = 25
    ) -> tuple[int, dict[int, int], float]:
        """``rate`` messages/s for ``duration`` s, every ``every``-th tagged and the
        last one too. On a schedule: late sends go out at once, in one write.
        Returns the messages sent, {tag: messages sent up to it}, when the last went."""
        total = max(1, round(rate * duration))
        marks: dict[int, int] = {}
        start = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            batch = []
            for i in range(sent, due):
                if i == total - 1 or i % every == every - 1:
                    n = self.new_tag()
                    marks[n] = i + 1
                    batch.append(self.tagged(n))
                else:
                    batch.append(self.texts.next())
            self.say(room, batch)
            sent = due
            if sent < total:
                # Sleep to the next message's slot (a schedule, not synchronisation).
                time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        return sent, marks, time.perf_counter()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send([{"type": "quit"}])
        self.sock.close()
