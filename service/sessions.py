"""Session state and where it lives: Redis (any replica serves any frame) or an in-process store.

One session is one key (a Redis hash `poselift:session:<id>`) holding
- the camera (`layout`, `width`, `height`, `fps`), the owner (a hash of the API key, never the key), the
  window;
- `rev`, a token every write replaces (this process's random token and a counter; what a commit
  compares), `last_seq` (-1 before the first frame) and `frames_seen`;
- the last W-1 normalised frames and their scores (the model's 2D history), raw little-endian float32 bytes;
- the last `poses_held` (>= W) poses with their seqs, so a resent frame gets its stored pose back.

Beside them one sorted set `poselift:sessions` indexes the session ids by expiry (epoch ms, the server's
clock), updated by the same scripts that write a session, so counting the live sessions for the metrics gauge
is a ZCARD, never a scan of the keyspace.

No pickle anywhere: numbers are raw `<f4` / `<i8` bytes, text is UTF-8. Every write refreshes the TTL. A
push is compute → `commit(new_state, expected_revision)`: the commit applies only if the stored `rev` is
still the one the push computed from (a Lua script in Redis, a check with no await before the write in
memory), so concurrent writers to one session never interleave, lose or duplicate frames. A refused commit
hands back the stored state in the same round trip, so the loser recomputes without another read, and a
replica that remembers the state it last wrote needs one store round trip per push; the commits of sessions
pushing in the same turn of the event loop share one (`_CommitPipeline`, one Redis server; each is still its
own atomic script). A revision token, not `last_seq`, is compared because two different histories can share
a `last_seq` (a store that lost its last writes in a crash, then took a different writer's frames): a token
never repeats. Both stores share the encoding below, so their semantics are identical by construction.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from poselift.sequence import BoneState, SequenceOutput
from poselift.skeleton import NUM_JOINTS
from service.errors import SessionIncompatible, SessionNotFound, StoreUnavailable, TooManySessions
from service.redis_cluster import cluster_client, is_cluster_url

KEY_PREFIX = "poselift:session:"
INDEX_KEY = "poselift:sessions"  # sorted set: session id -> expiry (epoch ms)
FORMAT_VERSION = b"3"  # 2: the `rev` token; 3: intrinsics, bone-length sums, held roots and visible fractions
F64 = np.dtype("<f8")
F32 = np.dtype("<f4")
I64 = np.dtype("<i8")
T = TypeVar("T")


DEFAULT_FPS = 50.0  # the frame rate assumed when a client states none (REST and gRPC alike)


@dataclass(frozen=True)
class Camera:
    """What a session (or one /v1/lift call) says about its video.

    `focal_px` and `principal_px` are the camera's intrinsics in pixels; None: the documented defaults
    (`poselift.geometry.default_focal_px`, the image centre). They only place the pelvis (the trajectory).
    """

    layout: str
    width: float
    height: float
    fps: float
    focal_px: float | None = None
    principal_px: tuple[float, float] | None = None


_PROCESS_TOKEN = secrets.token_hex(8)  # 64 random bits per process, so replicas never share a revision
_revisions = itertools.count()


def _reseed_revisions() -> None:
    """A forked child draws its own token: it must not repeat its parent's revisions."""
    global _PROCESS_TOKEN, _revisions
    _PROCESS_TOKEN, _revisions = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_reseed_revisions)


def new_revision() -> str:
    """A revision token no other write makes: this process's random token and a counter (no syscall, as
    `secrets` would need on every push)."""
    return f"{_PROCESS_TOKEN}{next(_revisions):x}"


def _tail(array: np.ndarray, count: int) -> np.ndarray:
    return array[max(len(array) - count, 0) :]


@dataclass(frozen=True)
class SessionState:
    """Everything a replica needs to continue a session; immutable (`advance` returns a new one)."""

    session_id: str
    camera: Camera
    owner: str
    window: int
    created_s: float = field(default_factory=time.time)
    last_seq: int = -1
    frames_seen: int = 0
    history_kp: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS, 2), F32))  # (H<W, 17, 2)
    history_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS), F32))  # (H, 17)
    pose_seqs: np.ndarray = field(default_factory=lambda: np.zeros(0, I64))  # (P,)
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS, 3), F32))  # (P, 17, 3) mm
    roots: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), F32))  # (P, 3) mm, held poses' pelvis
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, F32))  # (P,) held poses' visible fraction
    bone_sum: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS - 1, F64))  # (16,) Σ w·length
    bone_weight: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS - 1, F64))  # (16,) Σ w
    revision: str = field(default_factory=new_revision)  # replaced by every `advance`
    expires_in_s: float = 0.0  # filled in by `load`; not stored

    def held_index(self, seq: int) -> int | None:
        """Where the output of `seq` is held, or None if it was never processed or is no longer held."""
        hits = np.flatnonzero(self.pose_seqs == seq)
        return int(hits[0]) if len(hits) else None

    def held_pose(self, seq: int) -> np.ndarray | None:
        """The stored (17, 3) pose of `seq`, or None if it was never processed or is no longer held."""
        index = self.held_index(seq)
        return None if index is None else self.poses[index]

    def advance(
        self,
        seqs: np.ndarray,
        kp_norm: np.ndarray,
        scores: np.ndarray,
        output: SequenceOutput,
        poses_held: int,
        history: int | None = None,
        bones: BoneState | None = None,
    ) -> SessionState:
        """The state after processing new frames (seqs increasing, all > last_seq).

        Args:
            seqs: (n,) frame seqs; kp_norm: (n, 17, 2); scores: (n, 17); output: their lifted output.
            poses_held: how many latest poses to keep for resends.
            history: how many latest frames the next windows need (`poselift.sequence.history_length`;
                None: window - 1, a model that takes frames as they come).
            bones: the bone-length estimate after these frames (None: the model keeps none).
        """
        keep = poses_held
        history = self.window - 1 if history is None else history
        n = len(seqs)
        roots = output.root_mm if output.root_mm is not None else np.zeros((n, 3), F32)
        return replace(
            self,
            last_seq=int(seqs[-1]),
            frames_seen=self.frames_seen + n,
            history_kp=_tail(np.concatenate([self.history_kp, kp_norm.astype(F32)]), history),
            history_scores=_tail(np.concatenate([self.history_scores, scores.astype(F32)]), history),
            pose_seqs=_tail(np.concatenate([self.pose_seqs, seqs.astype(I64)]), keep),
            poses=_tail(np.concatenate([self.poses, output.poses_mm.astype(F32)]), keep),
            roots=_tail(np.concatenate([self.roots, roots.astype(F32)]), keep),
            visible=_tail(np.concatenate([self.visible, output.visible.astype(F32)]), keep),
            bone_sum=self.bone_sum if bones is None else bones.length_sum,
            bone_weight=self.bone_weight if bones is None else bones.weight_sum,
            revision=new_revision(),
        )

    @property
    def bones(self) -> BoneState:
        return BoneState(self.bone_sum, self.bone_weight)


def encode(state: SessionState) -> dict[bytes, bytes]:
    """A state as the fields of its hash: text as UTF-8, arrays as raw little-endian bytes."""
    cam = state.camera
    text = {
        "v": FORMAT_VERSION.decode(),
        "layout": cam.layout,
        "width": repr(float(cam.width)),
        "height": repr(float(cam.height)),
        "fps": repr(float(cam.fps)),
        "focal_px": "" if cam.focal_px is None else repr(float(cam.focal_px)),
        "principal_px": ""
        if cam.principal_px is None
        else ",".join(repr(float(v)) for v in cam.principal_px),
        "owner": state.owner,
        "window": str(state.window),
        "created_s": repr(state.created_s),
    }
    fields = {k.encode(): v.encode() for k, v in text.items()}
    fields.update(encode_progress(state))
    return fields


def encode_progress(state: SessionState) -> dict[bytes, bytes]:
    """The fields a commit changes (revision, seqs, history, poses); the rest never change after `create`,
    so a commit sends only these."""
    return {
        b"rev": state.revision.encode(),
        b"last_seq": str(state.last_seq).encode(),
        b"frames_seen": str(state.frames_seen).encode(),
        b"history_kp": np.asarray(state.history_kp, F32).tobytes(),
        b"history_scores": np.asarray(state.history_scores, F32).tobytes(),
        b"pose_seqs": np.asarray(state.pose_seqs, I64).tobytes(),
        b"poses": np.asarray(state.poses, F32).tobytes(),
        b"roots": np.asarray(state.roots, F32).tobytes(),
        b"visible": np.asarray(state.visible, F32).tobytes(),
        b"bone_sum": np.asarray(state.bone_sum, F64).tobytes(),
        b"bone_weight": np.asarray(state.bone_weight, F64).tobytes(),
    }


def decode(session_id: str, fields: Mapping[bytes, bytes], expires_in_s: float) -> SessionState:
    """Inverse of `encode`."""
    if fields.get(b"v") != FORMAT_VERSION:
        raise SessionIncompatible(
            f"session {session_id!r} is stored in format {fields.get(b'v')!r} by another release; this "
            f"replica reads format {FORMAT_VERSION!r}: continue it on a replica of that release, or open a "
            "new one"
        )

    def text(name: str) -> str:
        return fields[name.encode()].decode()

    def array(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(fields[name.encode()], dtype=dtype).reshape(-1, *shape)

    focal, principal = text("focal_px"), text("principal_px")
    camera = Camera(
        text("layout"),
        float(text("width")),
        float(text("height")),
        float(text("fps")),
        float(focal) if focal else None,
        (float(principal.split(",")[0]), float(principal.split(",")[1])) if principal else None,
    )
    return SessionState(
        session_id=session_id,
        camera=camera,
        owner=text("owner"),
        window=int(text("window")),
        created_s=float(text("created_s")),
        last_seq=int(text("last_seq")),
        frames_seen=int(text("frames_seen")),
        history_kp=array("history_kp", F32, (NUM_JOINTS, 2)),
        history_scores=array("history_scores", F32, (NUM_JOINTS,)),
        pose_seqs=array("pose_seqs", I64, ()).reshape(-1),
        poses=array("poses", F32, (NUM_JOINTS, 3)),
        roots=array("roots", F32, (3,)),
        visible=array("visible", F32, ()).reshape(-1),
        bone_sum=array("bone_sum", F64, ()).reshape(-1),
        bone_weight=array("bone_weight", F64, ()).reshape(-1),
        revision=text("rev"),
        expires_in_s=expires_in_s,
    )


class SessionStore(Protocol):
    """Where sessions live. Every method raises `StoreUnavailable` when the store does not answer in time."""

    ttl_s: int
    remote: bool  # every call is a network round trip

    async def create(self, state: SessionState) -> None:
        """Store a new session with a fresh TTL."""
        ...

    async def load(self, session_id: str) -> SessionState:
        """The session with its remaining TTL; raises `SessionNotFound`."""
        ...

    async def commit(
        self, state: SessionState, expected_revision: str, alone: bool = False
    ) -> tuple[bool, SessionState]:
        """Replace the session by `state`, refreshing its TTL, if its revision is still `expected_revision`.

        One round trip either way. Returns (True, `state`) when written; (False, the stored state) when
        another writer committed first (nothing written). Raises `SessionNotFound` if the session is gone.
        `alone`: the caller knows no other commit is coming now, so a store that gathers concurrent commits
        (`_CommitPipeline`) sends this one at once.
        """
        ...

    async def delete(self, session_id: str) -> bool:
        """Remove a session; False if there was none."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""
        ...

    async def count(self) -> int:
        """Sessions currently held (for the active-sessions gauge); cheap, never a scan of every key."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemorySessionStore:
    """The in-process store: one machine, no Redis. Same encoding and semantics as `RedisSessionStore`."""

    remote = False  # reading it costs no round trip: nothing to save by remembering states

    def __init__(self, ttl_s: int, max_sessions: int = 100_000):
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._entries: dict[str, tuple[dict[bytes, bytes], float]] = {}  # id -> (fields, expiry monotonic s)
        self._next_sweep = 0.0

    def _live(self, session_id: str) -> tuple[dict[bytes, bytes], float] | None:
        entry = self._entries.get(session_id)
        if entry is not None and entry[1] <= time.monotonic():
            del self._entries[session_id]
            return None
        return entry

    def _sweep(self) -> None:
        """Drop expired sessions, at most every `ttl_s / 10` (10 s at most): never once per request."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            self._next_sweep = now + min(self.ttl_s / 10, 10.0)

    async def create(self, state: SessionState) -> None:
        self._sweep()
        if len(self._entries) >= self.max_sessions:
            raise TooManySessions(
                f"this server holds its maximum of {self.max_sessions} sessions; retry later"
            )
        self._entries[state.session_id] = (encode(state), time.monotonic() + self.ttl_s)

    async def load(self, session_id: str) -> SessionState:
        entry = self._live(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        return decode(session_id, entry[0], max(entry[1] - time.monotonic(), 0.0))

    async def commit(
        self, state: SessionState, expected_revision: str, alone: bool = False
    ) -> tuple[bool, SessionState]:
        # No await between the check and the write: atomic on the event loop.
        entry = self._live(state.session_id)
        if entry is None:
            raise SessionNotFound(state.session_id)
        if entry[0][b"rev"] == state.revision.encode():  # this commit already applied (as Redis answers it)
            return True, state
        if entry[0][b"rev"] != expected_revision.encode():
            return False, decode(state.session_id, entry[0], max(entry[1] - time.monotonic(), 0.0))
        fields = {**entry[0], **encode_progress(state)}
        self._entries[state.session_id] = (fields, time.monotonic() + self.ttl_s)
        return True, state

    async def delete(self, session_id: str) -> bool:
        return self._live(session_id) is not None and self._entries.pop(session_id, None) is not None

    async def ping(self) -> None:
        return None

    async def count(self) -> int:
        self._sweep()
        return len(self._entries)

    async def close(self) -> None:
        self._entries.clear()


# The index of live sessions: ZADD with the expiry by the server's clock, expired ids pruned on the way.
_INDEX_LUA = """
local function index(id, ttl_s)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ttl_s) * 1000, id)
end
"""

# KEYS[1]: the session, KEYS[2]: its index; ARGV[1]: TTL s; ARGV[2]: session id; ARGV[3..]: field, value, ...
_CREATE_LUA = (
    _INDEX_LUA
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
index(ARGV[2], ARGV[1])
return 1
"""
)

# KEYS[1]: the session, KEYS[2]: its index; ARGV[1]: TTL s; ARGV[2]: session id; ARGV[3]: expected revision;
# ARGV[4..]: field, value, field, value, ... Returns {1} written, {-1} no such session, or {0, PTTL ms,
# {field, value, ...}}: refused, with the stored state, so the loser needs no second round trip to re-read.
_COMMIT_LUA = (
    _INDEX_LUA
    + """
local current = redis.call('HGET', KEYS[1], 'rev')
if not current then return {-1} end
if current ~= ARGV[3] then
  return {0, redis.call('PTTL', KEYS[1]), redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
index(ARGV[2], ARGV[1])
return {1}
"""
)

# KEYS[1]: the session. {PTTL ms, {field, value, ...}} in one atomic read ({-2, {}} when there is none).
_LOAD_LUA = """
return {redis.call('PTTL', KEYS[1]), redis.call('HGETALL', KEYS[1])}
"""

# KEYS[1]: the session, KEYS[2]: its index; ARGV[1]: session id. 1 if there was a session, else 0.
_DELETE_LUA = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS[1]: an index. Its live sessions: ids whose expiry is still ahead.
_COUNT_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZCARD', KEYS[1])
"""

CLUSTER_SLOTS = 16384  # Redis Cluster's hash slots
CLUSTER_TAGS = 256  # hash tags a cluster's sessions spread over, one index each


@functools.cache
def cluster_tags(count: int = CLUSTER_TAGS) -> tuple[str, ...]:
    """`count` hash tags whose slots are evenly spaced (tag k hashes to slot k * 16384 / count), so masters
    that hold equal slot ranges (as `redis-cli --cluster create` and `rebalance` make them) hold equal shares
    of the sessions: the smallest decimal numbers that hash there, found once per process."""
    wanted = {k * CLUSTER_SLOTS // count: k for k in range(count)}
    tags: dict[int, str] = {}
    for number in itertools.count():
        k = wanted.get(key_slot(str(number).encode()))
        if k is not None:
            tags.setdefault(k, str(number))
            if len(tags) == count:
                return tuple(tags[k] for k in range(count))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class KeyLayout:
    """The Redis keys of a session and of the index of live sessions.

    One Redis (`tags` empty): the hash `poselift:session:<id>`, one index `poselift:sessions`. A cluster:
    the slot the id hashes to picks one of `CLUSTER_TAGS` hash tags; the session
    `poselift:session:{<tag>}<id>` and its index `poselift:sessions:{<tag>}` share it, so they share a slot
    and every script touches one slot.
    Sessions spread over all masters; the live sessions are counted over every index.
    """

    tags: tuple[str, ...] = ()

    def _tag(self, session_id: str) -> str:
        return self.tags[key_slot(session_id.encode()) * len(self.tags) // CLUSTER_SLOTS]

    def session(self, session_id: str) -> str:
        if not self.tags:
            return KEY_PREFIX + session_id
        return f"{KEY_PREFIX}{{{self._tag(session_id)}}}{session_id}"

    def index(self, session_id: str) -> str:
        return f"{INDEX_KEY}:{{{self._tag(session_id)}}}" if self.tags else INDEX_KEY

    def indexes(self) -> list[str]:
        return [f"{INDEX_KEY}:{{{tag}}}" for tag in self.tags] if self.tags else [INDEX_KEY]


# Redis answered, but cannot serve now (loading, a read-only replica after a failover, out of memory, a
# cluster with a slot unserved or mid-failover, no cluster node reachable): like an unreachable Redis, a 503.
# Any other RedisError is a bug of ours (a 500, its traceback logged).
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # BusyLoadingError (LOADING), AuthenticationError, MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN, redirections without end
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,  # the client found no node to ask, or a slot no node serves
    OSError,
    TimeoutError,  # our own deadline (asyncio.timeout)
    # redis-py 8.1's asyncio connections leak a transport's internals instead of a ConnectionError when a
    # connection is closed under a command (redis/redis-py#4287): a cluster client closing its connections to
    # re-read the topology mid-failover makes the commands in flight fail with
    # "'NoneType' object has no attribute 'writelines'". Nothing else here raises these.
    AttributeError,
    TypeError,
)


_Queued = tuple[list[str], list[bytes | str | int], asyncio.Future[object]]  # a commit's keys, args, caller


class _CommitPipeline:
    """Commits made in one turn of the event loop, sent to one Redis as one pipeline.

    Under many streams the sessions whose windows shared a model pass all commit in the same turn of the loop;
    sent one call each, every commit pays redis-py's per-call path (a pooled connection taken and given back,
    a write, a read woken for its reply), about 140 us of the event loop per frame against 65 us pipelined
    (docs/performance.md). The first commit of a turn schedules a flush for the next turn, which sends every
    commit queued by then in one non-transactional pipeline; each caller gets its own script's reply or error,
    exactly as from its own call (each commit is still its own atomic script, checking its own revision). A
    commit queued alone waits one turn of the loop for company (a caller that knows it is alone calls the
    script directly). Flushes do not wait for each other: the commits of the next turn go out at once, on
    another pooled connection. A flush is bounded by the store's timeout, as a direct call is, so a stalled
    Redis never holds a connection past its callers' deadlines.
    """

    def __init__(self, client: aioredis.Redis, script: AsyncScript, timeout_s: float):
        self._client = client
        self._script = script
        self._timeout_s = timeout_s
        self._queued: list[_Queued] = []
        self._next: asyncio.Task[None] | None = None  # the flush scheduled, not yet started
        self._flushes: set[asyncio.Task[None]] = set()

    async def send(self, keys: list[str], args: list[bytes | str | int]) -> object:
        """The commit script's reply for `keys` / `args`, sent with the others of this turn."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queued.append((keys, args, future))
        if self._next is None:
            # Its first step runs next turn, when this turn's commits are all queued.
            self._next = asyncio.create_task(self._flush())
            self._flushes.add(self._next)
            self._next.add_done_callback(self._done)
        return await future

    def _done(self, flush: asyncio.Task[None]) -> None:
        self._flushes.discard(flush)
        if self._next is flush:  # cancelled before it started (the loop is closing): nobody will send these
            self._next = None
            batch, self._queued = self._queued, []
            self._fail(batch, redis_errors.ConnectionError("the session store is closing"))

    @staticmethod
    def _fail(batch: list[_Queued], error: Exception) -> None:
        for *_, future in batch:
            if not future.done():
                future.set_exception(error)

    @staticmethod
    def _settle(future: asyncio.Future[object], reply: object) -> None:
        if future.done():  # its caller's time ran out
            return
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    async def _flush(self) -> None:
        batch, self._queued, self._next = self._queued, [], None
        batch = [item for item in batch if not item[2].done()]  # a caller whose time ran out has gone
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._send(batch)
        except Exception as error:  # the connection failed or timed out: every caller not yet answered hears
            self._fail(batch, error)
        except BaseException:  # cancelled (the loop is closing)
            self._fail(batch, redis_errors.ConnectionError("the session store is closing"))
            raise

    async def _send(self, batch: list[_Queued]) -> None:
        if len(batch) == 1:  # no company came: a plain call (with its own NOSCRIPT handling) costs less
            keys, args, future = batch[0]
            self._settle(future, await self._script(keys=keys, args=args))
            return
        replies = await self._pipeline([(keys, args) for keys, args, _ in batch])
        lost = []
        for item, reply in zip(batch, replies, strict=True):
            if isinstance(reply, redis_errors.NoScriptError):  # Redis restarted or flushed its scripts
                lost.append(item)
            else:
                self._settle(item[2], reply)  # answered now: a failure below is not theirs
        if lost:
            await self._client.script_load(self._script.script)
            for (*_, future), reply in zip(
                lost, await self._pipeline([(k, a) for k, a, _ in lost]), strict=True
            ):
                self._settle(future, reply)

    async def _pipeline(self, calls: list[tuple[list[str], list[bytes | str | int]]]) -> list[object]:
        # Plain EVALSHA, not the Script object: a pipeline that holds Script calls first asks Redis whether
        # it has the scripts (SCRIPT EXISTS), a second round trip on every flush.
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        """Let the flushes under way finish (their callers are waiting for them), bounded by the timeout."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


class RedisSessionStore:
    """Sessions in Redis (one server or a cluster), one hash per session, commits by a Lua compare-and-set on
    the revision token.

    Every call is bounded by `timeout_s` (socket timeouts plus an overall deadline), so an unreachable Redis
    turns into `StoreUnavailable` (503) quickly; the client reconnects by itself once Redis is back (on a
    cluster: re-reads the topology, so it follows a failover). Every call is one script on one slot.
    Scripts use `TIME` before writing, so Redis 5 or later is needed (script effects replication).
    """

    remote = True

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        ttl_s: int,
        timeout_s: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        layout: KeyLayout = KeyLayout(),
        max_in_flight: int = 0,
        pipeline_commits: bool = True,
    ):
        """
        Args:
            layout: the key names (`KeyLayout(cluster_tags())` on a cluster).
            max_in_flight: calls at once at most (0: no bound); more wait their turn within `timeout_s`.
            pipeline_commits: send the commits made in one turn of the event loop as one pipeline (one
                round trip on one connection, `_CommitPipeline`); one server only, not a cluster.
        """
        self.client = client
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.on_error = on_error
        self.layout = layout
        self._turns = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._create_script = client.register_script(_CREATE_LUA)
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._load_script = client.register_script(_LOAD_LUA)
        self._delete_script = client.register_script(_DELETE_LUA)
        # A cluster's commits go one call each: its pipelines split by node and re-route after a failover.
        self._commits = (
            _CommitPipeline(client, self._commit_script, timeout_s)
            if pipeline_commits and not isinstance(client, RedisCluster)
            else None
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        ttl_s: int,
        timeout_s: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        max_connections: int = 64,
        pipeline_commits: bool = True,
    ) -> RedisSessionStore:
        """A store on a new client for `url` (a cluster for `redis+cluster://`) with bounded timeouts and one
        immediate reconnect attempt.

        Args:
            max_connections: connections to Redis (to each node of a cluster) at most; a call that finds them
                all busy waits for one (within `timeout_s`) rather than failing, so many concurrent streams
                queue, not error.
            pipeline_commits: pipeline the commits of one event-loop turn (one server only; a cluster's
                commits go one call each).
        """
        if is_cluster_url(url):
            cluster = cluster_client(url, timeout_s, max_connections)
            # The cluster client refuses a call when a node's connections are all busy: calls queue here.
            return cls(cluster, ttl_s, timeout_s, on_error, KeyLayout(cluster_tags()), max_connections)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),  # one retry on a fresh connection: survives a restarted Redis
            health_check_interval=30,
        )
        client = aioredis.Redis(connection_pool=pool)
        return cls(client, ttl_s, timeout_s, on_error, pipeline_commits=pipeline_commits)

    def key(self, session_id: str) -> str:
        """The session's hash."""
        return self.layout.session(session_id)

    async def _call(self, operation: str, call: Awaitable[T], count_errors: bool = True) -> T:
        """Await `call` within the time bound; Redis down or unable to serve -> `StoreUnavailable`.

        Args:
            count_errors: report failures to `on_error` (the store-errors counter).
        """
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole call, queueing, retries, reconnects
                if self._turns is None:
                    return await call
                async with self._turns:
                    return await call
        except _UNAVAILABLE_ERRORS as error:
            if count_errors and self.on_error is not None:
                self.on_error(operation)
            reason = (
                type(error).__name__
                if isinstance(error, TimeoutError)
                else str(error) or type(error).__name__
            )
            raise StoreUnavailable(
                f"the session store is unreachable ({operation}: {reason}); retry later"
            ) from error
        except redis_errors.RedisError:
            if count_errors and self.on_error is not None:
                self.on_error(operation)
            raise  # a command Redis refused: our bug, not an outage
        finally:
            if inspect.iscoroutine(call):
                call.close()  # not awaited if the deadline passed in the queue: no "never awaited" warning

    def _write_args(
        self, state: SessionState, fields: dict[bytes, bytes], *head: str | int
    ) -> list[bytes | str | int]:
        args: list[bytes | str | int] = [self.ttl_s, state.session_id, *head]
        for name, value in fields.items():
            args += [name, value]
        return args

    def _keys(self, session_id: str) -> list[str]:
        return [self.layout.session(session_id), self.layout.index(session_id)]

    async def create(self, state: SessionState) -> None:
        args = self._write_args(state, encode(state))
        await self._call("create", self._create_script(keys=self._keys(state.session_id), args=args))

    async def load(self, session_id: str) -> SessionState:
        pttl, flat = await self._call("load", self._load_script(keys=[self.layout.session(session_id)]))
        if not flat:
            raise SessionNotFound(session_id)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return decode(session_id, fields, max(int(pttl), 0) / 1000.0)

    async def commit(
        self, state: SessionState, expected_revision: str, alone: bool = False
    ) -> tuple[bool, SessionState]:
        args = self._write_args(state, encode_progress(state), expected_revision)
        keys = self._keys(state.session_id)
        if self._commits is None or alone:
            call = self._commit_script(keys=keys, args=args)
        else:
            call = self._commits.send(keys, args)
        result = await self._call("commit", call)
        if result[0] == -1:
            raise SessionNotFound(state.session_id)
        if result[0] == 1:
            return True, state
        _, pttl, flat = result
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        stored = decode(state.session_id, fields, max(int(pttl), 0) / 1000.0)
        if stored.revision == state.revision:
            # This very commit, landed before redis-py re-sent it on a new connection (revision tokens never
            # repeat): written, not a rival's.
            return True, state
        return False, stored

    async def delete(self, session_id: str) -> bool:
        script = self._delete_script(keys=self._keys(session_id), args=[session_id])
        return bool(await self._call("delete", script))

    async def ping(self) -> None:
        """The store answers; a cluster also says every slot is served (`cluster_state:ok`)."""
        if not isinstance(self.client, RedisCluster):
            await self._call("ping", self.client.ping())
            return
        info = await self._call("ping", self.client.cluster_info())
        if info.get("cluster_state") != "ok":
            if self.on_error is not None:
                self.on_error("ping")
            raise StoreUnavailable(
                f"the session store is unreachable (ping: cluster_state {info.get('cluster_state')}); "
                "retry later"
            )

    async def count(self) -> int:
        """Live sessions from the indexes (O(log N) each; one round trip per cluster node), never a scan of
        the keyspace; a failure is not counted as a store error (a scrape)."""

        async def run() -> list[object]:
            async with self.client.pipeline(transaction=False) as pipe:
                for index in self.layout.indexes():
                    pipe.eval(_COUNT_LUA, 1, index)
                return await pipe.execute()

        totals = await self._call("count", run(), count_errors=False)
        return sum(int(total) for total in totals)  # type: ignore[call-overload]

    async def close(self) -> None:
        if self._commits is not None:
            await self._commits.aclose()
        if isinstance(self.client, RedisCluster):
            await self.client.aclose()  # its nodes' connections too
        else:
            await self.client.aclose(close_connection_pool=True)  # the pool is ours: its connections too


def build_store(
    redis_url: str,
    ttl_s: int,
    timeout_s: float,
    max_sessions: int,
    on_error: Callable[[str], None] | None = None,
    redis_connections: int = 64,
    pipeline_commits: bool = True,
) -> SessionStore:
    """Redis (one server, or a cluster for `redis+cluster://`) when a URL is given, else the in-process
    store."""
    if redis_url:
        return RedisSessionStore.from_url(
            redis_url, ttl_s, timeout_s, on_error, redis_connections, pipeline_commits
        )
    return MemorySessionStore(ttl_s, max_sessions)
