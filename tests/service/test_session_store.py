"""One suite, every store: the in-process store, Redis and Redis Cluster behave identically."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from unittest.mock import AsyncMock

import numpy as np
import pytest
import redis
from redis import exceptions as redis_errors

from poselift.sequence import BoneState, SequenceOutput
from service.errors import SessionIncompatible, SessionNotFound, StoreUnavailable, TooManySessions
from service.sessions import (
    INDEX_KEY,
    KEY_PREFIX,
    Camera,
    MemorySessionStore,
    RedisSessionStore,
    SessionState,
    SessionStore,
    decode,
    encode,
)
from tests.service.clusterkit import LoopbackCluster
from tests.service.testkit import RedisServer

CAMERA = Camera("coco17", 1280.0, 720.0, 25.0)
CAMERA_WITH_INTRINSICS = Camera("h36m17", 1920.0, 1080.0, 30.0, 1450.5, (955.25, 540.0))
StoreFactory = Callable[..., SessionStore]


@pytest.fixture(params=["memory", "redis", "redis-calls", "cluster"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every store: in-process, one redis-server (commits pipelined, the default, and one call each), and a
    Redis Cluster of 3 masters with replicas."""
    return str(request.param)


@pytest.fixture()
def make_store(store_kind: str, request: pytest.FixtureRequest) -> StoreFactory:
    """Builds a store of the parametrised kind (inside the test's event loop, as redis.asyncio needs)."""
    if store_kind == "memory":
        return lambda ttl_s=60, **kw: MemorySessionStore(ttl_s, **kw)
    if store_kind == "cluster":
        cluster: LoopbackCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        # A cluster client's first call reads the topology and loads the scripts on every node: ten times the
        # work of one redis-server's first call, more than 0.5 s on a loaded test machine. No test here is
        # about the time bound.
        return lambda ttl_s=60, **kw: RedisSessionStore.from_url(cluster.url, ttl_s, timeout_s=3.0)
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()  # a clean keyspace: counts and expiries are this test's own
    pipelined = store_kind == "redis"
    return lambda ttl_s=60, **kw: RedisSessionStore.from_url(
        server.url, ttl_s, timeout_s=0.5, pipeline_commits=pipelined
    )


def run(make_store: StoreFactory, body: Callable[[SessionStore], Awaitable[Any]], **kw: Any) -> Any:
    async def main() -> Any:
        store = make_store(**kw)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def state(session_id: str = "s" * 32, owner: str = "alice", camera: Camera = CAMERA) -> SessionState:
    return SessionState(session_id=session_id, camera=camera, owner=owner, window=5)


def frames(seqs: list[int], value: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray, SequenceOutput]:
    n = len(seqs)
    kp = np.full((n, 17, 2), value, np.float32)
    scores = np.linspace(0.1, 1.0, n * 17, dtype=np.float32).reshape(n, 17)
    poses = np.arange(n * 51, dtype=np.float32).reshape(n, 17, 3)
    roots = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 4000.0
    return np.asarray(seqs), kp, scores, SequenceOutput(poses, roots, np.linspace(0, 1, n, dtype=np.float32))


def test_store_create_load_round_trip(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> None:
        bones = BoneState(np.linspace(1e5, 2e5, 16), np.linspace(1.0, 3.0, 16))
        original = state(camera=CAMERA_WITH_INTRINSICS).advance(*frames([3, 4, 9]), poses_held=8, bones=bones)
        await store.create(original)
        loaded = await store.load(original.session_id)
        assert (loaded.camera, loaded.owner, loaded.window) == (CAMERA_WITH_INTRINSICS, "alice", 5)
        assert (loaded.last_seq, loaded.frames_seen) == (9, 3)
        np.testing.assert_array_equal(loaded.history_kp, original.history_kp)
        np.testing.assert_array_equal(loaded.history_scores, original.history_scores)
        np.testing.assert_array_equal(loaded.pose_seqs, [3, 4, 9])
        np.testing.assert_array_equal(loaded.poses, original.poses)
        np.testing.assert_array_equal(loaded.roots, original.roots)
        np.testing.assert_array_equal(loaded.visible, original.visible)
        np.testing.assert_array_equal(loaded.bone_sum, bones.length_sum)  # float64, exactly
        np.testing.assert_array_equal(loaded.bone_weight, bones.weight_sum)
        assert 55 < loaded.expires_in_s <= 60

    run(make_store, body)


def test_store_keeps_last_window_minus_one_frames_and_held_poses() -> None:
    advanced = state().advance(*frames(list(range(10))), poses_held=6)
    assert advanced.history_kp.shape == (4, 17, 2) and advanced.history_scores.shape == (4, 17)
    assert advanced.pose_seqs.tolist() == [4, 5, 6, 7, 8, 9]
    assert advanced.held_pose(2) is None
    np.testing.assert_array_equal(advanced.held_pose(9), advanced.poses[-1])
    assert state().advance(*frames([0, 1]), poses_held=1).pose_seqs.tolist() == [1]


def test_store_encoding_is_raw_bytes_without_pickle() -> None:
    fields = encode(state().advance(*frames([0, 1, 2]), poses_held=8))
    assert len(fields[b"history_kp"]) == 3 * 17 * 2 * 4  # float32
    assert len(fields[b"pose_seqs"]) == 3 * 8  # int64
    assert not any(value.startswith(b"\x80") for value in fields.values())  # no pickle protocol header
    assert decode("x", fields, 1.0).frames_seen == 3


def test_store_commit_applies_only_on_expected_revision(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> None:
        start = state()
        await store.create(start)
        first = start.advance(*frames([0, 1]), poses_held=8)
        assert await store.commit(first, expected_revision=start.revision) == (True, first)
        rival = start.advance(*frames([0, 1, 2], value=0.5), poses_held=8)  # computed from the stale state
        written, stored = await store.commit(rival, expected_revision=start.revision)
        assert not written  # refused, and the refusal carries what is stored: no second read needed
        assert (stored.revision, stored.last_seq, stored.frames_seen) == (first.revision, 1, 2)
        np.testing.assert_array_equal(stored.history_kp, first.history_kp)
        np.testing.assert_array_equal(stored.poses, first.poses)
        assert 55 < stored.expires_in_s <= 60
        loaded = await store.load(start.session_id)
        assert (loaded.revision, loaded.last_seq, loaded.frames_seen) == (first.revision, 1, 2)
        np.testing.assert_array_equal(loaded.history_kp, first.history_kp)

    run(make_store, body)


def test_store_commit_compares_revisions_not_seqs(make_store: StoreFactory) -> None:
    """Two histories with the same last_seq (a store that lost its last writes, then took another writer's)
    are told apart: a commit computed from the other one is refused."""

    async def body(store: SessionStore) -> None:
        start = state()
        await store.create(start)
        mine = start.advance(*frames([0]), poses_held=8)
        theirs = start.advance(*frames([0], value=0.5), poses_held=8)
        assert (await store.commit(theirs, expected_revision=start.revision))[0]
        assert mine.last_seq == theirs.last_seq and mine.revision != theirs.revision
        written, stored = await store.commit(mine.advance(*frames([1]), poses_held=8), mine.revision)
        assert not written and stored.revision == theirs.revision

    run(make_store, body)


def test_store_concurrent_commits_exactly_one_wins(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> list[bool]:
        start = state()
        await store.create(start)
        rivals = [start.advance(*frames([k]), poses_held=8) for k in range(16)]
        results = await asyncio.gather(*[store.commit(r, expected_revision=start.revision) for r in rivals])
        return [written for written, _ in results]

    assert sum(run(make_store, body)) == 1


def test_store_commit_sent_twice_is_written_once_not_a_conflict(make_store: StoreFactory) -> None:
    """A commit re-sent after it landed (redis-py re-sends a call on a new connection after a connection
    error) finds its own revision stored: it reports written, and a rival's stale commit is still refused."""

    async def body(store: SessionStore) -> tuple[bool, bool, bool, SessionState]:
        start = state()
        await store.create(start)
        mine = start.advance(*frames([0]), poses_held=8)
        first, _ = await store.commit(mine, expected_revision=start.revision)
        again, _ = await store.commit(mine, expected_revision=start.revision)
        rival, stored = await store.commit(start.advance(*frames([0], 0.75), poses_held=8), start.revision)
        return first, again, rival, stored

    first, again, rival, stored = run(make_store, body)
    assert first and again and not rival
    assert stored.frames_seen == 1 and float(stored.history_kp[0, 0, 0]) == 0.25


def test_store_commit_refreshes_ttl(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> tuple[float, float]:
        start = state()
        await store.create(start)
        await asyncio.sleep(1.2)
        before = (await store.load(start.session_id)).expires_in_s
        await store.commit(start.advance(*frames([0]), poses_held=8), start.revision)
        return before, (await store.load(start.session_id)).expires_in_s

    before, after = run(make_store, body, ttl_s=5)
    assert before < 4.0 < after <= 5.0


def test_store_session_expires_after_ttl(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> None:
        await store.create(state())
        await asyncio.sleep(1.3)
        with pytest.raises(SessionNotFound):
            await store.load(state().session_id)
        with pytest.raises(SessionNotFound):
            await store.commit(state().advance(*frames([0]), poses_held=8), state().revision)

    run(make_store, body, ttl_s=1)


def test_store_delete_and_missing(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> None:
        await store.create(state())
        assert await store.count() >= 1
        assert await store.delete(state().session_id)
        assert not await store.delete(state().session_id)
        with pytest.raises(SessionNotFound):
            await store.load(state().session_id)
        await store.ping()

    run(make_store, body)


def test_store_count_follows_creates_deletes_and_expiry(make_store: StoreFactory) -> None:
    async def body(store: SessionStore) -> list[int]:
        counts = [await store.count()]
        for name in "abc":
            await store.create(state(name * 32))
        counts.append(await store.count())
        await store.delete("a" * 32)
        counts.append(await store.count())
        await asyncio.sleep(0.7)
        b = await store.load("b" * 32)
        await store.commit(b.advance(*frames([0]), poses_held=8), b.revision)
        await asyncio.sleep(0.6)  # "c" expired; "b" was refreshed by its commit
        counts.append(await store.count())
        return counts

    assert run(make_store, body, ttl_s=1) == [0, 3, 2, 1]


def test_store_redis_count_reads_an_index_not_the_keyspace(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    for k in range(50):  # other keys in the same database are not sessions and cost nothing to count
        client.set(f"{KEY_PREFIX}but-not-a-session-{k}" if k % 2 else f"other:{k}", b"x")

    async def body() -> int:
        store = RedisSessionStore.from_url(redis_server.url, 60)
        try:
            await store.create(state("k" * 32))
            client.execute_command("CONFIG", "RESETSTAT")
            total = await store.count()
        finally:
            await store.close()
        return total

    assert asyncio.run(body()) == 1
    commands = client.info("commandstats")
    assert "cmdstat_scan" not in commands and "cmdstat_keys" not in commands
    assert client.zscore(INDEX_KEY, "k" * 32) is not None
    client.close()


def test_store_redis_count_failure_is_not_a_store_error() -> None:
    errors: list[str] = []

    async def body() -> None:
        store = RedisSessionStore.from_url("redis://127.0.0.1:1/0", 60, timeout_s=0.3, on_error=errors.append)
        try:
            with pytest.raises(StoreUnavailable):
                await store.count()  # a metrics scrape
            with pytest.raises(StoreUnavailable):
                await store.load("x" * 32)  # a request
        finally:
            await store.close()

    asyncio.run(body())
    assert errors == ["load"]


def test_store_redis_unable_to_serve_is_unavailable_other_errors_are_bugs(redis_server: RedisServer) -> None:
    errors: list[str] = []

    async def body() -> None:
        store = RedisSessionStore.from_url(redis_server.url, 60, on_error=errors.append)
        try:
            redis.Redis.from_url(redis_server.url).set(KEY_PREFIX + "w" * 32, b"not a hash")
            with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):  # a 500: never a 503
                await store.load("w" * 32)
            for refusal in (
                redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."),
                redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
                redis_errors.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
            ):
                store.client.ping = AsyncMock(side_effect=refusal)  # type: ignore[method-assign]
                with pytest.raises(StoreUnavailable, match=str(refusal).split()[0]):
                    await store.ping()
        finally:
            await store.close()

    asyncio.run(body())
    assert errors == ["load", "ping", "ping", "ping"]


def test_store_redis_connection_closed_under_a_command_is_unavailable(redis_server: RedisServer) -> None:
    """redis-py 8.1 raises the transport's AttributeError/TypeError when a connection is closed under a
    command (redis/redis-py#4287; a cluster client does that when it re-reads the topology mid-failover):
    a 503 to retry, like a ConnectionError."""

    async def body() -> list[str]:
        store = RedisSessionStore.from_url(redis_server.url, 60)
        messages = []
        try:
            for leak in (
                AttributeError("'NoneType' object has no attribute 'writelines'"),
                TypeError("'NoneType' object is not callable"),
            ):
                store.client.ping = AsyncMock(side_effect=leak)  # type: ignore[method-assign]
                with pytest.raises(StoreUnavailable) as refused:
                    await store.ping()
                messages.append(refused.value.message)
        finally:
            await store.close()
        return messages

    assert all("unreachable (ping: 'NoneType' object" in m for m in asyncio.run(body()))


def test_store_memory_refuses_past_max_sessions() -> None:
    async def body() -> None:
        store = MemorySessionStore(60, max_sessions=2)
        await store.create(state("a" * 32))
        await store.create(state("b" * 32))
        with pytest.raises(TooManySessions):
            await store.create(state("c" * 32))

    asyncio.run(body())


def test_store_memory_at_capacity_sweeps_on_schedule_only() -> None:
    async def body() -> None:
        store = MemorySessionStore(1, max_sessions=2)  # expired sessions are swept every 0.1 s at most
        await store.create(state("a" * 32))
        await store.create(state("b" * 32))
        entries = store._entries
        for _ in range(100):  # every refusal at capacity is O(1): the sessions are not rescanned each time
            with pytest.raises(TooManySessions):
                await store.create(state("c" * 32))
        assert store._entries is entries
        await asyncio.sleep(1.2)  # both expired: the next scheduled sweep makes room
        await store.create(state("c" * 32))
        assert await store.count() == 1

    asyncio.run(body())


def test_store_redis_one_hash_per_session_with_ttl(redis_server: RedisServer) -> None:
    async def body() -> None:
        store = RedisSessionStore.from_url(redis_server.url, 60)
        try:
            await store.create(state("k" * 32))
        finally:
            await store.close()

    asyncio.run(body())
    client = redis.Redis.from_url(redis_server.url)
    key = KEY_PREFIX + "k" * 32
    assert client.type(key) == b"hash"
    assert 0 < client.ttl(key) <= 60
    assert client.hget(key, "owner") == b"alice"
    client.close()


def test_store_redis_unreachable_is_store_unavailable_quickly() -> None:
    async def body() -> float:
        store = RedisSessionStore.from_url("redis://127.0.0.1:1/0", 60, timeout_s=0.3)
        started = time.monotonic()
        try:
            with pytest.raises(StoreUnavailable):
                await store.load("x" * 32)
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            await store.close()
        return time.monotonic() - started

    assert asyncio.run(body()) < 2.0


def test_store_redis_more_concurrent_calls_than_connections_wait_not_fail(redis_server: RedisServer) -> None:
    """256 sessions pushing at once through 8 connections: every commit lands (a full pool is a queue, not
    an outage)."""

    async def body() -> list[bool]:
        # The largest store timeout the settings allow: the last of 256 calls queues behind 32 rounds of 8.
        store = RedisSessionStore.from_url(
            redis_server.url, 60, timeout_s=1.0, max_connections=8, pipeline_commits=False
        )
        try:
            starts = [state(f"{k:032d}") for k in range(256)]
            await asyncio.gather(*[store.create(s) for s in starts])
            commits = [store.commit(s.advance(*frames([0]), poses_held=8), s.revision) for s in starts]
            return [written for written, _ in await asyncio.gather(*commits)]
        finally:
            await store.close()

    assert all(asyncio.run(body()))


def _clients(url: str) -> int:
    """Connections the redis-server at `url` holds, besides the one asking."""
    client = redis.Redis.from_url(url)
    try:
        return len(client.client_list()) - 1
    finally:
        client.close()


def test_store_redis_commits_of_one_turn_go_as_one_pipeline(own_redis: RedisServer) -> None:
    """16 sessions committing at once: every commit lands, over one connection (sent one call each, the
    pool would open one per commit under way)."""

    async def body(pipelined: bool) -> tuple[list[bool], int]:
        own_redis.flush()
        store = RedisSessionStore.from_url(own_redis.url, 60, timeout_s=1.0, pipeline_commits=pipelined)
        try:
            starts = [state(f"{k:032d}") for k in range(16)]
            for start in starts:  # one after another: one connection
                await store.create(start)
            commits = [store.commit(s.advance(*frames([0]), poses_held=8), s.revision) for s in starts]
            written = [ok for ok, _ in await asyncio.gather(*commits)]
            return written, _clients(own_redis.url)
        finally:
            await store.close()

    written, connections = asyncio.run(body(pipelined=True))
    assert all(written) and connections == 1
    written, connections = asyncio.run(body(pipelined=False))
    assert all(written) and connections == 16  # what the pipeline saves


def test_store_redis_pipelined_commits_are_each_checked_on_their_own(own_redis: RedisServer) -> None:
    """In one pipeline: a commit on the current revision lands, a stale one is refused with the stored state,
    one for a deleted session is SessionNotFound, and a lost script (SCRIPT FLUSH) is loaded again."""

    async def body() -> tuple[object, ...]:
        store = RedisSessionStore.from_url(own_redis.url, 60, timeout_s=1.0)
        try:
            a, b, gone = state("a" * 32), state("b" * 32), state("c" * 32)
            for s in (a, b, gone):
                await store.create(s)
            b1 = b.advance(*frames([0]), poses_held=8)
            assert (await store.commit(b1, b.revision))[0]
            await store.delete(gone.session_id)
            with redis.Redis.from_url(own_redis.url) as admin:
                admin.script_flush()
            a1 = a.advance(*frames([0]), poses_held=8)
            stale = b.advance(*frames([0], value=0.75), poses_held=8)  # computed from b's old revision
            orphan = gone.advance(*frames([0]), poses_held=8)
            replies = await asyncio.gather(
                store.commit(a1, a.revision),
                store.commit(stale, b.revision),
                store.commit(orphan, gone.revision),
                return_exceptions=True,
            )
            return (*replies, b1, await store.load(a.session_id))
        finally:
            await store.close()

    landed, refused, missing, b1, a_now = asyncio.run(body())
    assert landed[0] is True  # type: ignore[index]
    assert a_now.last_seq == 0  # type: ignore[attr-defined]
    written, stored = refused  # type: ignore[misc]
    assert written is False and stored.revision == b1.revision  # type: ignore[attr-defined]
    assert np.array_equal(stored.history_kp, b1.history_kp)  # type: ignore[attr-defined]
    assert isinstance(missing, SessionNotFound)


def test_store_redis_pipelined_commits_on_a_stalled_redis_fail_and_close_does_not_wait(
    own_redis: RedisServer,
) -> None:
    """Redis stalls (CLIENT PAUSE, 5 s) under a turn's commits: each caller gets StoreUnavailable within the
    store's timeout, and closing the store returns while Redis is still paused."""

    async def body() -> list[object]:
        store = RedisSessionStore.from_url(own_redis.url, 60, timeout_s=0.3)
        try:
            starts = [state(f"{k:032d}") for k in range(4)]
            for start in starts:
                await store.create(start)
            with redis.Redis.from_url(own_redis.url) as admin:
                admin.client_pause(5000)
            commits = [store.commit(s.advance(*frames([0]), poses_held=8), s.revision) for s in starts]
            return list(await asyncio.gather(*commits, return_exceptions=True))
        finally:
            await store.close()

    results = asyncio.run(body())
    assert all(isinstance(result, StoreUnavailable) for result in results), results
    with redis.Redis.from_url(own_redis.url, socket_timeout=0.5) as probe, pytest.raises(redis.TimeoutError):
        probe.ping()  # still paused: nothing above waited for Redis to come back


def test_store_redis_a_flush_cancelled_before_it_ran_fails_its_commits_and_the_next_turn_sends(
    redis_server: RedisServer,
) -> None:
    """If a scheduled flush is cancelled before its first step (as at loop teardown), its callers hear
    StoreUnavailable instead of waiting out their timeout, and later commits are still sent."""

    async def body() -> tuple[object, bool]:
        redis_server.flush()
        store = RedisSessionStore.from_url(redis_server.url, 60, timeout_s=2.0)
        try:
            a, b = state("a" * 32), state("b" * 32)
            await store.create(a)
            await store.create(b)
            waiting = asyncio.gather(
                store.commit(a.advance(*frames([0]), poses_held=8), a.revision),
                store.commit(b.advance(*frames([0]), poses_held=8), b.revision),
                return_exceptions=True,
            )
            await asyncio.sleep(0)  # both queued, their flush scheduled
            assert store._commits is not None and store._commits._next is not None
            store._commits._next.cancel()
            first, _ = await waiting
            a1 = a.advance(*frames([0]), poses_held=8)
            written, _ = await store.commit(a1, a.revision)
            return first, written
        finally:
            await store.close()

    failed, written = asyncio.run(body())
    assert isinstance(failed, StoreUnavailable) and written


def test_store_another_release_format_is_incompatible_not_an_error() -> None:
    fields = encode(state())
    fields[b"v"] = b"1"  # what the previous release wrote
    with pytest.raises(SessionIncompatible, match="another release"):
        decode("s" * 32, fields, 1.0)


def test_store_redis_close_closes_its_connections(redis_server: RedisServer) -> None:
    async def body() -> None:
        store = RedisSessionStore.from_url(redis_server.url, 60, timeout_s=0.5, max_connections=8)
        await asyncio.gather(*[store.ping() for _ in range(8)])  # several connections in the pool
        await store.close()

    client = redis.Redis.from_url(redis_server.url)
    before = len(client.client_list())
    asyncio.run(body())
    time.sleep(0.1)  # let Redis notice the closed sockets
    assert len(client.client_list()) == before
    client.close()
