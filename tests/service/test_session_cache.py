"""A replica remembers the sessions it wrote: one Redis round trip per push, and never a wrong history.

Two cores stand for two replicas on one real redis-server; Redis's own command statistics count the round
trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import redis

from poselift import Lifter
from service.engine import Engine
from service.errors import SessionNotFound
from service.lifting import FrameInput, LiftingCore
from service.metrics import Metrics
from service.session_cache import SessionCache
from service.sessions import Camera, MemorySessionStore, RedisSessionStore, SessionState
from tests.service.testkit import TOLERANCE_MM, Clip, RedisServer, make_settings

Body = Callable[[list[LiftingCore]], Awaitable[Any]]


def with_replicas(lifter: Lifter, server: RedisServer, body: Body, replicas: int = 2, **kw: Any) -> Any:
    """`body` with `replicas` cores, each with its own store client and memory, on one Redis."""

    async def main() -> Any:
        engine = Engine(lifter)
        engine.start()
        stores = [RedisSessionStore.from_url(server.url, 60) for _ in range(replicas)]
        try:
            settings = make_settings(redis_url=server.url, **kw)
            return await body([LiftingCore(settings, engine, store, Metrics()) for store in stores])
        finally:
            engine.stop()
            for store in stores:
                await store.close()

    return asyncio.run(main())


def camera(clip: Clip) -> Camera:
    return Camera("h36m17", clip.width, clip.height, clip.fps)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@pytest.mark.parametrize("cache", [10_000, 0])
def test_cache_a_stream_push_is_one_redis_round_trip(
    lifter: Lifter, redis_server: RedisServer, clip: Clip, cache: int
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    frames = 30

    async def body(cores: list[LiftingCore]) -> None:
        core = cores[0]
        info = await core.open_session(camera(clip), "")
        await core.push_frames(info.session_id, [FrameInput(0, clip.keypoints_px[0])], "")  # scripts loaded
        client.execute_command("CONFIG", "RESETSTAT")
        for i in range(1, frames):
            await core.push_frames(info.session_id, [FrameInput(i, clip.keypoints_px[i])], "")

    with_replicas(lifter, redis_server, body, replicas=1, session_cache=cache)
    calls = command_calls(client)
    client.close()
    pushes = frames - 1
    # Commands run by a script count in Redis's statistics too, so the reads are told by name: a read is a
    # script of PTTL and HGETALL, which a commit that is not refused never runs.
    if cache:
        assert calls["evalsha"] == pushes  # the commit alone: no read before it
        assert not {"hgetall", "pttl"} & calls.keys()
    else:
        assert calls["evalsha"] == 2 * pushes  # a read, then the commit
        assert calls["pttl"] == calls["hgetall"] == pushes


def test_cache_replicas_taking_turns_give_the_uninterrupted_poses(
    lifter: Lifter, redis_server: RedisServer, clip: Clip
) -> None:
    """Frames alternate between two replicas, so each one's memory is always one push behind: every push
    starts from a stale state, is refused once, and is recomputed on the state the refusal returned."""
    kp = clip.keypoints_px[:20]

    async def body(cores: list[LiftingCore]) -> tuple[np.ndarray, list[float]]:
        info = await cores[0].open_session(camera(clip), "")
        await cores[1].get_session(info.session_id, "")  # replica 1 remembers the new session too
        poses = []
        for i in range(len(kp)):
            [out] = await cores[i % 2].push_frames(info.session_id, [FrameInput(i, kp[i])], "")
            pose = out.pose_mm
            poses.append(pose)
        conflicts = [
            core.metrics.registry.get_sample_value("poselift_push_conflicts_total") or 0.0 for core in cores
        ]
        return np.stack(poses), conflicts

    poses, conflicts = with_replicas(lifter, redis_server, body)
    offline = lifter.lift(kp, clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM)
    assert conflicts == [9.0, 10.0]  # each stale push refused once (replica 0's first push was current)


def test_cache_a_resend_reads_the_store(lifter: Lifter, redis_server: RedisServer, clip: Clip) -> None:
    """Replica 1 remembers the session at seq 1; replica 0 takes 2..3. Resending 2..3 to replica 1 gets
    replica 0's poses (held in the store), not a recomputation; a session closed elsewhere is gone."""
    kp = clip.keypoints_px

    async def body(cores: list[LiftingCore]) -> None:
        info = await cores[1].open_session(camera(clip), "")
        sid = info.session_id
        await cores[1].push_frames(sid, [FrameInput(i, kp[i]) for i in range(2)], "")
        first = await cores[0].push_frames(sid, [FrameInput(i, kp[i]) for i in (2, 3)], "")
        again = await cores[1].push_frames(sid, [FrameInput(i, kp[i]) for i in (2, 3)], "")
        for (seq_a, pose_a), (seq_b, pose_b) in zip(
            [(p.seq, p.pose_mm) for p in first], [(p.seq, p.pose_mm) for p in again], strict=True
        ):
            assert seq_a == seq_b
            np.testing.assert_array_equal(pose_a, pose_b)
        assert (await cores[1].get_session(sid, "")).frames_seen == 4
        await cores[0].close_session(sid, "")
        with pytest.raises(SessionNotFound):  # a resend with a new frame: not answered from memory
            await cores[1].push_frames(sid, [FrameInput(3, kp[3]), FrameInput(4, kp[4])], "")
        other = (await cores[1].open_session(camera(clip), "")).session_id
        await cores[0].close_session(other, "")
        with pytest.raises(SessionNotFound):  # a new frame: the commit finds the session gone
            await cores[1].push_frames(other, [FrameInput(0, kp[0])], "")

    with_replicas(lifter, redis_server, body)


def test_cache_follows_a_store_that_lost_writes(
    lifter: Lifter, redis_server: RedisServer, clip: Clip
) -> None:
    """Redis rolls back to an older state (a restart from an old snapshot): the next push is refused once,
    recomputed on what Redis holds, and from then on the replica is back to one round trip per push."""
    kp = clip.keypoints_px
    client = redis.Redis.from_url(redis_server.url)

    async def body(cores: list[LiftingCore]) -> list[np.ndarray]:
        core = cores[0]
        sid = (await core.open_session(camera(clip), "")).session_id
        assert isinstance(core.store, RedisSessionStore)
        key = core.store.key(sid)
        poses = [p.pose_mm for p in await core.push_frames(sid, [FrameInput(i, kp[i]) for i in range(5)], "")]
        snapshot = client.dump(key)
        assert isinstance(snapshot, bytes)
        await core.push_frames(sid, [FrameInput(i, kp[i]) for i in range(5, 10)], "")  # lost below
        client.restore(key, 60_000, snapshot, replace=True)
        for i in range(10, 20):
            [out] = await core.push_frames(sid, [FrameInput(i, kp[i])], "")
            pose = out.pose_mm
            poses.append(pose)
        assert core.metrics.registry.get_sample_value("poselift_push_conflicts_total") == 1.0
        return poses

    poses = with_replicas(lifter, redis_server, body, replicas=1)
    client.close()
    kept = [*range(5), *range(10, 20)]  # the history Redis holds: frames 5..9 were lost
    offline = lifter.lift(kp[kept], clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(np.stack(poses), offline, rtol=0, atol=TOLERANCE_MM)


def test_cache_is_off_for_the_in_process_store(lifter: Lifter) -> None:
    core = LiftingCore(make_settings(), Engine(lifter), MemorySessionStore(60), Metrics())
    assert core.sessions_seen.capacity == 0  # reading it costs no round trip


def test_cache_another_owner_never_sees_a_remembered_session(
    lifter: Lifter, redis_server: RedisServer, clip: Clip
) -> None:
    async def body(cores: list[LiftingCore]) -> None:
        info = await cores[0].open_session(camera(clip), "alice")
        with pytest.raises(SessionNotFound):
            await cores[0].push_frames(info.session_id, [FrameInput(0, clip.keypoints_px[0])], "mallory")

    with_replicas(lifter, redis_server, body, replicas=1)


def state(session_id: str, frames_seen: int = 0) -> SessionState:
    return SessionState(session_id, Camera("h36m17", 640, 480, 30), "", 5, frames_seen=frames_seen)


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = SessionCache(2)
    for name in "abc":
        cache.put(state(name * 16))
        if name == "b":
            assert cache.get("a" * 16) is not None  # "a" used: "b" is now the oldest
    assert len(cache) == 2 and cache.get("b" * 16) is None and cache.get("a" * 16) is not None
    off = SessionCache(0)
    off.put(state("a" * 16))
    assert off.get("a" * 16) is None


def test_cache_takes_the_latest_word_even_if_older() -> None:
    """What the store last said wins, even with fewer frames: after lost writes it is the truth."""
    cache = SessionCache(4)
    cache.put(state("a" * 16, frames_seen=5))
    rolled_back = state("a" * 16, frames_seen=3)
    cache.put(rolled_back)
    assert cache.get("a" * 16) is rolled_back
    cache.drop("a" * 16)
    assert cache.get("a" * 16) is None
