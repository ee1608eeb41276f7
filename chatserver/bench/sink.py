"""A trivial fan-out server, to show the load generator's own ceiling.

It speaks just enough of the protocol for the benchmark's clients (``hello``
-> ``welcome``, ``say`` -> ``msg`` to the room, the sender included) and does
nothing else: no validation, no history, no limits. Fan-out appends the one
encoded frame to each member's buffer and flushes every buffer once per event
loop turn, like the real hub. ``python -m chatserver.bench.sink --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence


class _Sink:
    def __init__(self) -> None:
        self.rooms: dict[str, list[_Peer]] = {}
        self.dirty: list[_Peer] = []
        self.next_id = 0
        self.loop = asyncio.get_running_loop()

    def queue(self, peer: _Peer, data: bytes) -> None:
        if not peer.out:
            if not self.dirty:
                self.loop.call_soon(self.flush)
            self.dirty.append(peer)
        peer.out.append(data)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for peer in dirty:
            if not peer.transport.is_closing():
                peer.transport.write(b"".join(peer.out))
            peer.out.clear()

    def frame(self, peer: _Peer, payload: bytes) -> None:
        msg = json.loads(payload)
        if msg.get("type") == "hello":
            peer.name = msg["name"]
            peer.rooms = msg.get("rooms", ["lobby"])
            for room in peer.rooms:
                self.rooms.setdefault(room, []).append(peer)
            welcome = {"type": "welcome", "name": peer.name, "proto": 1, "rooms": peer.rooms}
            self.queue(peer, _encode(welcome))
        elif msg.get("type") == "say":
            room = msg.get("room") or peer.rooms[-1]
            self.next_id += 1
            event = {
                "type": "msg",
                "id": self.next_id,
                "ts": "",
                "room": room,
                "from": peer.name,
                "text": msg["text"],
            }
            data = _encode(event)
            for member in self.rooms.get(room, ()):
                self.queue(member, data)

    def gone(self, peer: _Peer) -> None:
        for room in peer.rooms:
            members = self.rooms.get(room, [])
            if peer in members:
                members.remove(peer)


def _encode(event: dict[str, object]) -> bytes:
    payload = json.dumps(event, separators=(",", ":")).encode()
    return b"%-10d%s" % (len(payload), payload)


class _Peer(asyncio.Protocol):
    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.buf = b""
        self.out: list[bytes] = []
        self.name = ""
        self.rooms: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 10:
            n = int(buf[pos : pos + 10])
            if len(buf) - pos - 10 < n:
                break
            self.sink.frame(self, buf[pos + 10 : pos + 10 + n])
            pos += 10 + n
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.gone(self)


async def serve(host: str, port: int) -> None:
    sink = _Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Peer(sink), host, port, reuse_address=True)
    print(f"sink listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chatserver.bench.sink", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5599)
    args = p.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
