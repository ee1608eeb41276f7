"""Cluster mode: the message log and the name registry in Redis.

Every process of a cluster talks to one Redis (``--redis URL``):

* ``chat:log`` is a stream, the one order of everything that changes what
  people see: messages, direct messages, joins, leaves, names taken, changed
  and given up. Each entry's stream id is ``ID-0``, ID being the message id
  the clients see. Every process reads the whole stream, in order, and
  applies each entry as it comes (``Hub.delivered_*``); its own entries too:
  a process sends nobody anything before it has read it back from Redis
  (persist, then fan out; with ``--appendfsync always`` that is on disk).
* Each change is one Lua script, so that its check (is the name free?), its
  bookkeeping and its entry are one atomic step. Ids are
  ``max(last + 1, the caller's last seen + 1, Redis's clock in µs)``: strictly
  increasing, and never reused even by a Redis that lost its data.
* Each entry names the one before it (``p``): a reader that finds the chain
  broken (entries trimmed before it read them, or lost by Redis) knows what
  it did not see, says so in its log, and marks the gap in its archive, so
  that a resume across it answers ``history.gap``.
* ``chat:names`` holds every name's holder (process, session token, rooms);
  ``chat:node:NAME`` a process's names; ``chat:nodes`` each process's last
  heartbeat. A process silent for ``--node-timeout`` is taken for dead by the
  others: one of them frees its names with a ``leave`` for each room (the
  script is atomic, so once).
* Each process keeps the log's messages in its own ``--db`` (the archive):
  ``history``, backlogs and resumes read it there, as on one process, and
  reach back past what Redis keeps (``--redis-keep`` entries).

While Redis cannot be reached, every request that needs it is answered
``unavailable`` and nothing of it happens; clients stay connected, and the
process reconnects by itself, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.exceptions import RedisError

from .log import ClusterError
from .protocol import DmEvent, ErrorCode, MsgEvent, ProtocolError, Ref, name_key, now_ts
from .protocol.jsoncodec import dumps, loads
from .ratelog import Throttle
from .resp import RespConnection, RespError

if TYPE_CHECKING:
    from .config import Settings
    from .connection import Connection
    from .history import HistoryStore
    from .hub import Hub
    from .protocol import Hello

log = logging.getLogger("chatserver")

READ_COUNT = 1000  # entries read from the stream at a time
CATCH_UP_WAIT = 0.05  # seconds the writer waits at most for its last batch to be read back
CALL_TIMEOUT = 5.0  # seconds a call to Redis may take before Redis is taken for lost
ARCHIVE_EVERY = 0.1  # seconds between the archive's commits, at most
TURN_BYTES = 256 * 1024  # log bytes applied before the loop's other work has a turn
RETRY_FIRST = 0.1  # seconds before reconnecting to a lost Redis, doubling...
RETRY_MAX = 2.0  # ...up to this
START_TIMEOUT = 10.0  # seconds a starting process waits for Redis
MAX_IN_FLIGHT = 4096  # requests at Redis and not back yet, before input stops
ANSWER_TIMEOUT = 15.0  # seconds before a request whose entry never came back is refused

# Shared by every script: KEYS = log, last id, names, nodes; ARGV[1] the key
# prefix, ARGV[2] the caller's last seen id (a floor), ARGV[3] entries kept.
_PRELUDE = """
local LOG, LAST, NAMES, NODES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local PREFIX, FLOOR, KEEP = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local function append(kind, body)
  local prev = tonumber(redis.call('GET', LAST) or '0')
  local t = redis.call('TIME')
  local id = math.max(prev + 1, FLOOR + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  local sid = string.format('%.0f', id)
  redis.call('SET', LAST, sid)
  redis.call('XADD', LOG, 'MAXLEN', '~', KEEP, sid .. '-0',
             'k', kind, 'p', string.format('%.0f', prev), 'e', body)
  return sid
end
local function node_set(node) return PREFIX .. ':node:' .. node end
-- A name's holder, if this process holds it.
local function held_here(key, node)
  local held = redis.call('HGET', NAMES, key)
  if not held then return nil end
  local user = cjson.decode(held)
  if user.node ~= node then return nil end
  return user
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Free every name of a process: a leave for each of its rooms, once.
local function free_node(node, reason)
  local set = node_set(node)
  local n = 0
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    local user = held_here(key, node)
    if user then
      redis.call('HDEL', NAMES, key)
      append('offline', cjson.encode({key = key, name = user.name, rooms = user.rooms,
                                      reason = reason}))
      n = n + 1
    end
  end
  redis.call('DEL', set)
  return n
end
"""

# ARGV[4..]: kind, body (JSON) pairs: the messages and direct messages of a
# turn, in one call (a script call costs Redis more than the entry itself).
_APPEND = (
    _PRELUDE
    + """
local prev = tonumber(redis.call('GET', LAST) or '0')
local t = redis.call('TIME')
local id = math.max(prev, FLOOR, tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1)
local sprev = string.format('%.0f', prev)
for i = 4, #ARGV, 2 do
  id = id + 1
  local sid = string.format('%.0f', id)
  redis.call('XADD', LOG, 'MAXLEN', '~', KEEP, sid .. '-0',
             'k', ARGV[i], 'p', sprev, 'e', ARGV[i + 1])
  sprev = sid
end
redis.call('SET', LAST, sprev)
return sprev
"""
)


# ARGV[4..]: key, name, node, the session token given, wanted rooms (JSON), max
# rooms, body (JSON), the new session token.
_CLAIM = (
    _PRELUDE
    + """
local key, name, node, session = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local wanted, max_rooms, body = cjson.decode(ARGV[8]), tonumber(ARGV[9]), cjson.decode(ARGV[10])
local kept, replaces = {}, false
local held = redis.call('HGET', NAMES, key)
if held then
  local user = cjson.decode(held)
  if session == '' or user.session ~= session then
    return {0, 'taken', user.away or ''}
  end
  kept = user.rooms
  replaces = user.node
  redis.call('SREM', node_set(user.node), key)
end
local rooms, joined, seen = {}, {}, {}
for _, r in ipairs(kept) do rooms[#rooms + 1] = r; seen[r] = true end
for _, r in ipairs(wanted) do
  if not seen[r] then rooms[#rooms + 1] = r; joined[#joined + 1] = r; seen[r] = true end
end
if #rooms > max_rooms then return {0, 'too_many', ''} end
redis.call('HSET', NAMES, key, cjson.encode({name = name, node = node, session = ARGV[11],
                                             rooms = rooms}))
redis.call('SADD', node_set(node), key)
body.key, body.name, body.node = key, name, node
body.kept = kept
body.joined = joined
if replaces then body.replaces = replaces end
return {1, append('online', cjson.encode(body))}
"""
)

# ARGV[4..]: key, node, room, kind ('join' or 'leave'), body (JSON).
_MEMBER = (
    _PRELUDE
    + """
local key, node, room, kind = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local user = held_here(key, node)
if not user then return {0, 'gone'} end
local rooms, found = {}, false
for _, r in ipairs(user.rooms) do
  if r == room then found = true else rooms[#rooms + 1] = r end
end
if kind == 'join' then
  if found then return {0, 'already'} end
  rooms[#rooms + 1] = room
elseif not found then
  return {0, 'not_in_room'}
end
user.rooms = rooms
redis.call('HSET', NAMES, key, cjson.encode(user))
return {1, append(kind, ARGV[8])}
"""
)

# ARGV[4..]: key, new key, new name, node, body (JSON).
_RENAME = (
    _PRELUDE
    + """
local key, new_key, new, node = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local user = held_here(key, node)
if not user then return {0, 'gone'} end
if new_key ~= key and redis.call('HEXISTS', NAMES, new_key) == 1 then return {0, 'taken'} end
local body = cjson.decode(ARGV[8])
body.old = user.name
user.name = new
redis.call('HDEL', NAMES, key)
redis.call('HSET', NAMES, new_key, cjson.encode(user))
redis.call('SREM', node_set(node), key)
redis.call('SADD', node_set(node), new_key)
return {1, append('nick', cjson.encode(body))}
"""
)

# ARGV[4..]: key, node, session, reason. Nothing if the name moved on meanwhile.
_RELEASE = (
    _PRELUDE
    + """
local key, node, session, reason = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local user = held_here(key, node)
if not user or user.session ~= session then return {0, 'gone'} end
redis.call('HDEL', NAMES, key)
redis.call('SREM', node_set(node), key)
return {1, append('offline', cjson.encode({key = key, name = user.name, rooms = user.rooms,
                                          reason = reason}))}
"""
)

# ARGV[4..]: node, timeout (ms), whether this process may free others (0/1).
_BEAT = (
    _PRELUDE
    + """
local node, timeout, sweep = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local now = now_ms()
redis.call('HSET', NODES, node, now)
local freed = {}
if sweep then
  local beats = redis.call('HGETALL', NODES)
  for i = 1, #beats, 2 do
    local other, beat = beats[i], tonumber(beats[i + 1])
    if other ~= node and now - beat > timeout then
      freed[#freed + 1] = other
      freed[#freed + 1] = free_node(other, 'connection lost')
      redis.call('HDEL', NODES, other)
    end
  end
end
return freed
"""
)

# ARGV[4..]: node. A process starting: what an earlier run under its name
# left is freed, then the state of the chat as of the log's last entry.
_START = (
    _PRELUDE
    + """
local node = ARGV[4]
local freed = free_node(node, 'connection lost')
redis.call('HSET', NODES, node, now_ms())
return {redis.call('GET', LAST) or '0', redis.call('HGETALL', NAMES), freed}
"""
)

# ARGV[4..]: node, then key, holder (JSON) pairs: names a Redis that lost its
# data no longer has are written back by the processes that hold them.
_RESTORE = (
    _PRELUDE
    + """
local node = ARGV[4]
local n = 0
for i = 5, #ARGV, 2 do
  if redis.call('HSETNX', NAMES, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('SADD', node_set(node), ARGV[i])
    n = n + 1
  end
end
redis.call('HSET', NODES, node, now_ms())
return n
"""
)


class _Op:
    """One script call waiting for the next round trip."""

    __slots__ = ("args", "done", "failed", "script", "tokens")

    def __init__(
        self,
        script: Any,
        args: list[Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
    ) -> None:
        self.script = script
        self.args = args
        self.done = done
        self.failed = failed
        self.tokens: list[int] | None = None  # a batch of messages: their requests


class RedisLink:
    """The cluster's :class:`~chatserver.log.MessageLog` and
    :class:`~chatserver.log.NameRegistry`, on one Redis."""

    shared = True

    def __init__(self, settings: Settings, store: HistoryStore) -> None:
        self.settings = settings
        self.store = store
        self.prefix = prefix = settings.redis_prefix
        self.keys = [f"{prefix}:log", f"{prefix}:last", f"{prefix}:names", f"{prefix}:nodes"]
        self.pos = store.last_id()  # the last entry applied (the archive holds the messages)
        self.up = False  # Redis answers; while not, requests are refused `unavailable`
        self._hub: Hub | None = None
        self._ops: list[_Op] = []
        self._wake = asyncio.Event()
        # The writer waits for the reader to have read its last batch back.
        self._caught_up = asyncio.Event()
        self._read_upto = 0
        # token -> (requester, what it asked, when)
        self._pending: dict[int, tuple[Connection, Any, float]] = {}
        self._token = 0
        self._unreleased: list[list[Any]] = []  # releases Redis missed: sent when it is back
        self._up_since = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._lost_log = Throttle()
        self._gaps_log = Throttle()
        self._client: Any = None
        # The hot path's own connections (resp.py): the writes, and the log's reads.
        self._wire: RespConnection | None = None
        self._feed: RespConnection | None = None
        self._scripts: dict[str, Any] = {}
        self._committing = False
        self._releasing = False  # the hub's held input is to be let go next turn

    def bind(self, hub: Hub) -> None:
        self._hub = hub

    @property
    def node(self) -> str:
        assert self._hub is not None
        return self._hub.node

    # ------------------------------------------------------------------
    # Start and stop

    async def start(self) -> None:
        """Connect, catch the archive up with the log, and load who is where."""
        url = self.settings.redis
        assert url is not None
        self._client = redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, protocol=2)
        for name, source in (
            ("append", _APPEND),
            ("claim", _CLAIM),
            ("member", _MEMBER),
            ("rename", _RENAME),
            ("release", _RELEASE),
            ("beat", _BEAT),
            ("start", _START),
            ("restore", _RESTORE),
        ):
            self._scripts[name] = self._client.register_script(source)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                last, names, freed = await self._call("start", [self.node])
                break
            except (RedisError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"cannot reach Redis at {shown_url(url)}: {exc}") from None
                await asyncio.sleep(0.2)
        if freed:
            log.info("cluster: %d names left by an earlier run of %s freed", freed, self.node)
        # The archive first: every message up to the state just read.
        snapshot = int(last)
        while self.pos < snapshot:
            if not await self._read(block=None, upto=snapshot):
                break
        self._load(names)
        self.pos = max(self.pos, snapshot)
        self.up = True
        self._up_since = time.monotonic()
        log.info(
            "cluster: node %s on %s, log at %d, %d names elsewhere",
            self.node,
            shown_url(url),
            self.pos,
            len(self._hub.remote) if self._hub else 0,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop()),
            loop.create_task(self._read_loop()),
            loop.create_task(self._beat_loop()),
        ]

    def _load(self, names: list[bytes]) -> None:
        """Who is online elsewhere, from the registry (the state as of the log's end)."""
        hub = self._hub
        assert hub is not None
        from .hub import RemoteUser

        for i in range(0, len(names), 2):
            key = names[i].decode()
            user = loads(names[i + 1])
            if user["node"] == self.node:
                continue
            remote = hub.remote[key] = RemoteUser(user["name"], user["node"], user["rooms"] or ())
            for room_name in remote.rooms:
                hub._room(room_name).remote[key] = user["name"]

    async def close(self) -> None:
        """Leaving the cluster: this process's names are freed (its users were told bye)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self.up:
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._call("start", [self.node]), 3)
                await self._client.hdel(self.keys[3], self.node)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
        for wire in (self._wire, self._feed):
            if wire is not None:
                wire.close()

    # ------------------------------------------------------------------
    # Calls

    def _argv(self, args: list[Any]) -> list[Any]:
        return [self.prefix, self.pos, self.settings.redis_keep, *args]

    async def _call(self, script: str, args: list[Any]) -> Any:
        return await self._scripts[script](keys=self.keys, args=self._argv(args))

    def _submit(
        self,
        script: str,
        args: list[Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Send a script call with the next round trip (one pipeline a turn)."""
        if not self._ops:
            self._wake.set()
        self._ops.append(_Op(self._scripts[script], args, done, failed))

    def _append(self, kind: bytes, body: bytes, token: int) -> None:
        """A message goes with the others of this turn, in one script call."""
        ops = self._ops
        if ops and ops[-1].script is self._scripts["append"]:
            batch = ops[-1]
            batch.args += (kind, body)
            batch.tokens.append(token)  # type: ignore[union-attr]
            return
        self._submit("append", [kind, body])
        batch = self._ops[-1]
        tokens = batch.tokens = [token]

        def failed(exc: BaseException) -> None:
            for token in tokens:
                self._refuse(
                    token,
                    ErrorCode.UNAVAILABLE,
                    "the chat's shared log cannot be written: try again",
                )

        batch.failed = failed

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            if not ops:
                continue
            try:
                results = await self._send(ops)
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
                for op in ops:
                    if op.failed is not None:
                        op.failed(exc)
                continue
            appended = 0
            for op, result in zip(ops, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("cluster: a script failed: %s", result)
                    if op.failed is not None:
                        op.failed(result)
                    continue
                if op.tokens is not None:
                    appended = int(result)
                if op.done is not None:
                    op.done(result)
            if appended > self.pos:
                # The next batch goes once this one is read back: as on one
                # process, a turn takes in everything that came meanwhile,
                # and there are as few round trips as there are reads.
                self._read_upto = appended
                self._caught_up.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._caught_up.wait(), CATCH_UP_WAIT)

    async def _send(self, ops: list[_Op]) -> list[Any]:
        """One round trip: every op's script, pipelined on the lean connection
        (a script Redis lost, with a restart, is loaded again and its op resent)."""
        wire = self._wire
        if wire is None or not wire.alive():
            wire = self._wire = await RespConnection.open(self.settings.redis or "")
        keys = self.keys
        calls = [wire.call("EVALSHA", op.script.sha, 4, *keys, *self._argv(op.args)) for op in ops]
        results = [await asyncio.wait_for(call, CALL_TIMEOUT) for call in calls]
        for i, result in enumerate(results):
            if isinstance(result, RespError) and str(result).startswith("NOSCRIPT"):
                op = ops[i]
                await asyncio.wait_for(wire.call("SCRIPT", "LOAD", op.script.script), CALL_TIMEOUT)
                call = wire.call("EVALSHA", op.script.sha, 4, *keys, *self._argv(op.args))
                results[i] = await asyncio.wait_for(call, CALL_TIMEOUT)
        return results

    def _check_up(self) -> None:
        if not self.up:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "the chat's shared log cannot be reached: try again later"
            )

    def _wait(self, conn: Connection, what: Any) -> int:
        """The request is on its way (``conn.wait``: see the connection)."""
        self._token += 1
        pending = self._pending
        pending[self._token] = (conn, what, time.monotonic())
        conn.wait += 1
        if len(pending) >= MAX_IN_FLIGHT and self._hub is not None:
            # Redis is behind: everyone's input stops until it catches up.
            self._hub.holding = True
        return self._token

    def _back(self, token: int) -> tuple[Connection, Any] | None:
        pending = self._pending.pop(token, None)
        if pending is None:
            return None
        hub = self._hub
        assert hub is not None
        hub.answered(pending[0])
        if hub.holding and not self._releasing and len(self._pending) < MAX_IN_FLIGHT // 2:
            # Next turn, not inside the entry being applied.
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release_held)
        return pending[0], pending[1]

    def _release_held(self) -> None:
        self._releasing = False
        assert self._hub is not None
        self._hub.release_held()

    def _expire(self) -> None:
        """Requests whose entry never came back (lost with Redis's data, or
        trimmed before this process read it) are answered ``unavailable``:
        their connections must not wait for ever."""
        old = time.monotonic() - ANSWER_TIMEOUT
        for token in [t for t, p in self._pending.items() if p[2] < old]:
            self._refuse(token, ErrorCode.UNAVAILABLE, "the chat's shared log did not answer")

    def _refuse(self, token: int, code: ErrorCode, message: str) -> None:
        pending = self._back(token)
        if pending is None:
            return
        conn, what = pending
        assert self._hub is not None
        error = ProtocolError(code, message)
        if isinstance(what, tuple) and what and what[0] == "hello":
            self._hub.refused_hello(conn, error, what[1].ref)
        else:
            self._hub.send_error(conn, code, message, what)

    def _failed(self, token: int) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            self._refuse(
                token, ErrorCode.UNAVAILABLE, "the chat's shared log cannot be written: try again"
            )

        return failed

    def _answered(self, token: int, name: str = "") -> Callable[[Any], None]:
        """A script that may say no: its refusal goes back to the requester."""

        def done(result: Any) -> None:
            if int(result[0]) == 1:
                return  # its entry comes back through the log
            why = result[1].decode()
            code, message = _REFUSALS.get(why, (ErrorCode.BAD_MESSAGE, why))
            if why == "taken":
                message = f"the name {name} is taken" if name else message
                if len(result) > 2 and result[2]:
                    message += f" ({result[2].decode()})"
            elif why == "too_many":
                message = f"at most {self.settings.max_rooms} rooms a client"
            self._refuse(token, code, message)

        return done

    def _origin(self, token: int) -> dict[str, Any]:
        return {"on": self.node, "ot": token, "ts": now_ts()}

    # ------------------------------------------------------------------
    # The message log

    def say(self, origin: Connection, room: str, text: str, action: bool, ref: Ref) -> None:
        self._check_up()
        token = self._wait(origin, ref)
        body = self._origin(token)
        body.update(room=room, text=text, action=action)
        body["from"] = origin.name
        self._append(b"msg", dumps(body), token)

    def dm(self, origin: Connection, key: str, to: str, text: str, action: bool, ref: Ref) -> None:
        self._check_up()
        token = self._wait(origin, ref)
        body = self._origin(token)
        body.update(key=key, to=to, text=text, action=action)
        body["from"] = origin.name
        self._append(b"dm", dumps(body), token)

    def join(self, origin: Connection, room: str, ref: Ref) -> None:
        self._check_up()
        assert origin.key is not None
        token = self._wait(origin, ref)
        body = self._origin(token)
        body.update(room=room, key=origin.key, name=origin.name)
        args = [origin.key, self.node, room, "join", dumps(body)]
        self._submit("member", args, self._answered(token), self._failed(token))

    def leave(self, origin: Connection, room: str, reason: str) -> None:
        self._check_up()
        assert origin.key is not None
        token = self._wait(origin, None)
        body = self._origin(token)
        body.update(room=room, key=origin.key, name=origin.name, reason=reason)
        args = [origin.key, self.node, room, "leave", dumps(body)]
        self._submit("member", args, self._answered(token), self._failed(token))

    # ------------------------------------------------------------------
    # The name registry

    def claim(self, conn: Connection, hello: Hello) -> None:
        self._check_up()
        key = name_key(hello.name)
        token = self._wait(conn, ("hello", hello))
        body = self._origin(token)
        args = [
            key,
            hello.name,
            self.node,
            hello.session or "",
            dumps(list(hello.rooms)),
            self.settings.max_rooms,
            dumps(body),
            conn.session or "",
        ]
        self._submit("claim", args, self._answered(token, hello.name), self._failed(token))

    def rename(self, conn: Connection, new: str) -> None:
        self._check_up()
        assert conn.key is not None
        new_key = name_key(new)
        holder = self._hub.users.get(new_key) if self._hub else None
        if (holder is not None and holder is not conn) or (
            self._hub is not None and new_key in self._hub.remote
        ):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {new} is taken")
        token = self._wait(conn, None)
        body = self._origin(token)
        body.update(key=conn.key, new_key=new_key, new=new)
        args = [conn.key, new_key, new, self.node, dumps(body)]
        self._submit("rename", args, self._answered(token, new), self._failed(token))

    def release(self, conn: Connection, reason: str) -> None:
        """The connection is gone: it is forgotten here now, and its rooms (here
        too) are told when the release comes back through the log."""
        hub = self._hub
        assert hub is not None and conn.key is not None
        args = [conn.key, self.node, conn.session or "", reason]
        hub.hand_off(conn, self.node)
        if not self.up:
            self._unreleased.append(args)
            return
        self._submit("release", args, None, lambda exc: self._unreleased.append(args))

    # ------------------------------------------------------------------
    # Reading the log

    async def _read_loop(self) -> None:
        retry = RETRY_FIRST
        while not self._closed:
            try:
                if not self.up:
                    await self._reconnect()
                if await self._read(block=1000):
                    # Let this turn's input reach Redis before reading again:
                    # reads that carry more make fewer writes to the clients.
                    await asyncio.sleep(0)
                retry = RETRY_FIRST
            except (RedisError, OSError) as exc:
                if self.up and await self._answers():
                    continue  # a stall of ours (a stopped process), not Redis lost
                self._lost(exc)
                log.debug("cluster: Redis not back yet: %s", exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)
            except Exception:  # a bug of ours: logged, and the log goes on being read
                log.exception("cluster: reading the log failed")
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

    async def _answers(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), 1.0))
        except (RedisError, OSError, TimeoutError):
            return False

    async def _read(self, block: int | None, upto: int | None = None) -> bool:
        """Read and apply the next entries; whether there were any."""
        feed = self._feed
        if feed is None or not feed.alive():
            feed = self._feed = await RespConnection.open(self.settings.redis or "")
        args: list[Any] = ["XREAD", "COUNT", READ_COUNT]
        if block is not None:
            args += ["BLOCK", block]
        call = feed.call(*args, "STREAMS", self.keys[0], b"%d-0" % self.pos)
        wait = CALL_TIMEOUT + (block or 0) / 1000
        reply = await asyncio.wait_for(call, wait)
        if isinstance(reply, RespError):
            raise ConnectionError(f"Redis refused to read the log: {reply}")
        if not reply:
            return False
        entries = reply[0][1]
        hub = self._hub
        assert hub is not None
        size = 0
        for stream_id, fields in entries:
            entry_id = int(stream_id.split(b"-", 1)[0])
            if upto is not None and entry_id > upto:
                break  # past the state loaded at start: read again, in full, by the loop
            # fields: [b"k", kind, b"p", the entry before, b"e", body]
            prev = int(fields[3])
            if prev != self.pos and self._gap(self.pos, entry_id):
                self.pos = entry_id
                await self._resync()
            self.pos = entry_id
            if entry_id >= self._read_upto:
                self._caught_up.set()
            body = fields[5]
            try:
                self._apply(entry_id, fields[1], loads(body), archive_only=upto)
            except Exception:  # one bad entry must not stop the log
                log.exception("cluster: cannot apply entry %d", entry_id)
            size += len(body)
            if size > TURN_BYTES:
                # A turn's output is bounded as on one process: what was applied
                # is written (and a reader that keeps nothing is found slow)
                # before the next part of a large read.
                size = 0
                await asyncio.sleep(0)
        self._commit()
        return True

    def _apply(self, entry_id: int, kind: bytes, body: dict[str, Any], archive_only: Any) -> None:
        hub = self._hub
        assert hub is not None
        if kind == b"msg":
            msg = MsgEvent(
                entry_id, body["ts"], body["room"], body["from"], body["text"], body["action"]
            )
            self.store.keep(msg)
            if archive_only is not None:
                return
            origin, ref = self._from(body)
            hub.delivered_msg(msg, origin, ref)
            return
        if archive_only is not None:
            return
        origin, what = self._from(body)
        if kind == b"dm":
            event = DmEvent(
                entry_id, body["ts"], body["from"], body["to"], body["text"], body["action"]
            )
            hub.delivered_dm(event, body["key"], origin, what)
        elif kind == b"join":
            hub.delivered_join(body["room"], body["key"], body["name"], origin, what, body["ts"])
        elif kind == b"leave":
            hub.delivered_leave(body["room"], body["key"], body["name"], body["reason"])
        elif kind == b"nick":
            hub.renamed(body["key"], body["new_key"], body["old"], body["new"])
        elif kind == b"offline":
            ours = hub.users.get(body["key"])
            hub.released(body["key"], body["name"], list(body["rooms"] or ()), body["reason"])
            if ours is not None and ours.key is None:
                # Freed by the others, who took this process for dead (it was
                # stopped, or cut off from Redis too long): the client comes
                # back, here or elsewhere, and resumes.
                log.warning("cluster: %s was freed by another server; closing it", ours)
                ours.close("shutdown")
        elif kind == b"online":
            kept = list(body["kept"] or ())
            joined = list(body["joined"] or ())
            if origin is not None and not origin.closing:
                hello = what[1]
                ghost = hub.users.get(body["key"])
                hub.claimed(origin, hello, body["key"], kept, ghost, body["ts"])
            else:
                hub.delivered_online(
                    body["key"], body["name"], body["node"], kept, joined, body["ts"]
                )
                if origin is not None:  # gone while it waited: give the name back
                    origin.key = body["key"]
                    origin.rooms = dict.fromkeys(kept + joined)
                    self.release(origin, "disconnected")

    def _from(self, body: dict[str, Any]) -> tuple[Connection | None, Any]:
        """The requester of an entry, when it is ours (and what it asked)."""
        if body.get("on") != self.node:
            return None, None
        pending = self._back(body["ot"])
        return (None, None) if pending is None else pending

    def _commit(self) -> None:
        """The archive is written behind the log, nothing waits for it, and a
        few times a second at most (a commit a read cost more than the read):
        what a crash loses of it, the log has, and the start reads it back."""
        store = self.store
        if self._committing or not store.has_pending():
            return
        self._committing = True
        asyncio.get_running_loop().call_later(ARCHIVE_EVERY, self._commit_now)

    def _commit_now(self) -> None:
        store = self.store

        def done(error: BaseException | None) -> None:
            self._committing = False
            if error is not None:
                log.error(
                    "cluster: the archive %s cannot be written: %s",
                    getattr(store, "path", "store"),
                    error,
                )
                store.take_failed()

        store.commit(done)

    def _gap(self, after: int, upto: int) -> bool:
        """Entries between ``after`` and ``upto`` were never read here."""
        if after == 0:
            return False  # a new archive: it starts where the log does
        self._gaps_log.log(
            logging.WARNING,
            "cluster: log entries after %d and before %d were lost or trimmed before this"
            " process read them; resumes across them are answered history.gap",
            after,
            upto,
        )
        self.store.add_gap(after, upto)
        if self._hub is not None:
            self._hub.gap(upto)
        return True

    async def _resync(self) -> None:
        """After a gap, who is where may have changed unseen: take it from the
        registry again, and tell everyone here the differences."""
        hub = self._hub
        assert hub is not None
        names = await self._client.hgetall(self.keys[2])
        now = now_ts()
        seen: set[str] = set()
        for raw_key, raw in names.items():
            key = raw_key.decode()
            user = loads(raw)
            if user["node"] == self.node:
                continue
            seen.add(key)
            rooms = list(user["rooms"] or ())
            known = hub.remote.get(key)
            if known is None:
                hub.delivered_online(key, user["name"], user["node"], [], rooms, now)
                continue
            for room in rooms:
                if room not in known.rooms:
                    hub.delivered_join(room, key, user["name"], None, None, now)
            for room in list(known.rooms):
                if room not in rooms:
                    hub.delivered_leave(room, key, known.name, "connection lost")
        for key in [k for k in hub.remote if k not in seen]:
            user = hub.remote[key]
            hub.released(key, user.name, list(user.rooms), "connection lost")

    # ------------------------------------------------------------------
    # Liveness

    async def _beat_loop(self) -> None:
        every = self.settings.node_timeout / 4
        while not self._closed:
            await asyncio.sleep(every)
            self._expire()
            if not self.up:
                continue
            # Only a process that has itself been up for a whole timeout may
            # judge others: after an outage, everyone's beat is old.
            sweep = time.monotonic() - self._up_since > self.settings.node_timeout
            timeout_ms = int(self.settings.node_timeout * 1000)
            self._submit("beat", [self.node, timeout_ms, int(sweep)], self._swept)

    def _swept(self, freed: list[Any]) -> None:
        for i in range(0, len(freed), 2):
            log.warning(
                "cluster: %s went silent: its %d names were freed",
                freed[i].decode(),
                int(freed[i + 1]),
            )

    def _lost(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            self._lost_log.log(
                logging.ERROR,
                "cluster: Redis lost (%s); requests are refused until it is back",
                exc,
            )

    async def _reconnect(self) -> None:
        """Redis answers again: check what it kept, put back what it lost
        (raises RedisError or OSError while it does not)."""
        last = int(await self._client.get(self.keys[1]) or 0)
        hub = self._hub
        assert hub is not None
        if last < self.pos:
            log.error(
                "cluster: Redis came back without the log's end (its last id %d, ours %d):"
                " its data was lost; names are put back, ids go on above %d",
                last,
                self.pos,
                self.pos,
            )
        # Every name held here, back in the registry if it lost them.
        args: list[Any] = [self.node]
        for key, conn in hub.users.items():
            holder = {
                "name": conn.name,
                "node": self.node,
                "session": conn.session or "",
                "rooms": list(conn.rooms) or [],
            }
            args += [key, dumps(holder)]
        restored = await self._call("restore", args)
        if restored:
            log.warning("cluster: %d names put back into Redis", restored)
        while self._unreleased:
            await self._call("release", self._unreleased[0])
            del self._unreleased[0]
        self.up = True
        self._up_since = time.monotonic()
        self._lost_log.reset()
        log.warning("cluster: Redis is back")


def shown_url(url: str) -> str:
    """The URL for the log: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


_REFUSALS = {
    "taken": (ErrorCode.NAME_TAKEN, "the name is taken"),
    "too_many": (ErrorCode.TOO_MANY_ROOMS, "too many rooms"),
    "gone": (ErrorCode.UNAVAILABLE, "your session is being moved: try again"),
    "already": (ErrorCode.BAD_MESSAGE, "you are already in that room"),
    "not_in_room": (ErrorCode.NOT_IN_ROOM, "you are not in that room"),
}
