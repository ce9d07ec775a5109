"""The transport-agnostic core: validation messages, resends, and the optimistic-concurrency retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from poselift import Lifter
from poselift.sequence import SequenceOutput
from service.engine import Engine
from service.errors import (
    InvalidInput,
    PayloadTooLarge,
    SeqConflict,
    SessionBusy,
    SessionIncompatible,
    SessionNotFound,
)
from service.lifting import FrameInput, FrameOutput, LiftingCore, new_session_id, owner_id
from service.metrics import Metrics
from service.sessions import Camera, MemorySessionStore, SessionState
from tests.service.testkit import TOLERANCE_MM, Clip, make_settings


class RacingStore(MemorySessionStore):
    """A memory store where, just before each of the first `races` commits, another writer commits first."""

    def __init__(self, races: int) -> None:
        super().__init__(60)
        self.races = races
        self.rival: Callable[[], Awaitable[Any]] | None = None

    async def commit(
        self, state: SessionState, expected_revision: str, alone: bool = False
    ) -> tuple[bool, SessionState]:
        if self.races > 0 and self.rival is not None:
            self.races -= 1
            await self.rival()
        return await super().commit(state, expected_revision, alone)


def with_core(
    lifter: Lifter, body: Callable[[LiftingCore], Awaitable[Any]], store: Any = None, **kw: Any
) -> Any:
    async def main() -> Any:
        metrics = Metrics()
        engine = Engine(lifter, metrics=metrics)
        engine.start()
        try:
            return await body(
                LiftingCore(make_settings(**kw), engine, store or MemorySessionStore(60), metrics)
            )
        finally:
            engine.stop()

    return asyncio.run(main())


def camera(clip: Clip) -> Camera:
    return Camera("h36m17", clip.width, clip.height, clip.fps)


def test_core_push_retries_on_a_rival_commit_and_recomputes(lifter: Lifter, clip: Clip) -> None:
    kp = clip.keypoints_px
    store = RacingStore(races=1)

    async def body(core: LiftingCore) -> list[FrameOutput]:
        info = await core.open_session(camera(clip), "")
        await core.push_frames(info.session_id, [FrameInput(i, kp[i]) for i in range(3)], "")
        # The rival pushes frames 3..4 between our read and our commit: ours (3..6) must be recomputed on top.
        store.rival = lambda: core.push_frames(info.session_id, [FrameInput(i, kp[i]) for i in (3, 4)], "")
        result = await core.push_frames(info.session_id, [FrameInput(i, kp[i]) for i in range(3, 7)], "")
        assert (await core.get_session(info.session_id, "")).frames_seen == 7
        return result

    result = with_core(lifter, body, store)
    offline = lifter.lift(kp[:7], clip.width, clip.height, clip.fps)
    assert [p.seq for p in result] == [3, 4, 5, 6]
    np.testing.assert_allclose(np.stack([p.pose_mm for p in result]), offline[3:7], rtol=0, atol=TOLERANCE_MM)


def test_core_push_gives_up_after_retry_budget(lifter: Lifter, clip: Clip) -> None:
    store = RacingStore(races=100)
    rival_seqs = iter(range(1000))

    async def rival_commit(session_id: str) -> None:  # another writer, always just ahead of us
        current = await store.load(session_id)
        blank = np.zeros((1, 17, 2)), np.ones((1, 17)), SequenceOutput(np.zeros((1, 17, 3)), None, np.ones(1))
        advanced = current.advance(np.array([next(rival_seqs)]), *blank, poses_held=8)
        assert (await MemorySessionStore.commit(store, advanced, current.revision))[0]

    async def body(core: LiftingCore) -> None:
        info = await core.open_session(camera(clip), "")
        store.rival = lambda: rival_commit(info.session_id)
        with pytest.raises(SessionBusy, match="3 attempts"):
            await core.push_frames(info.session_id, [FrameInput(5000, clip.keypoints_px[0])], "")
        assert core.metrics.registry.get_sample_value("poselift_push_conflicts_total") == 3

    with_core(lifter, body, store, push_retries=3)


def test_core_validation_messages_say_what_is_wrong(lifter: Lifter, clip: Clip) -> None:
    kp = clip.keypoints_px[:3].copy()

    async def body(core: LiftingCore) -> None:
        cam = camera(clip)
        with pytest.raises(InvalidInput, match=r"shape \(frames, 17, 2\), got \(3, 16, 2\)"):
            await core.lift(cam, kp[:, :16])
        bad = kp.copy()
        bad[2, 5, 0] = np.nan
        with pytest.raises(InvalidInput, match=r"keypoints\[2\]\[5\]: keypoints must be finite") as caught:
            await core.lift(cam, bad)
        assert caught.value.location == ("keypoints", 2, 5)
        with pytest.raises(InvalidInput, match="unknown layout 'openpose'"):
            await core.lift(Camera("openpose", 640, 480, 30), kp)
        with pytest.raises(InvalidInput, match="width must be a whole number of pixels from 1 to 100000"):
            await core.lift(Camera("h36m17", -640, 480, 30), kp)
        with pytest.raises(InvalidInput, match="fps must be in"):
            await core.lift(Camera("h36m17", 640, 480, 0), kp)
        with pytest.raises(InvalidInput, match=r"scores must be finite numbers in \[0, 1\]"):
            await core.lift(cam, kp, np.full((3, 17), 1.5))
        with pytest.raises(PayloadTooLarge, match="limit is 3"):
            await core.lift(cam, clip.keypoints_px[:4])
        info = await core.open_session(cam, "")
        frames = [FrameInput(s, kp[0]) for s in (4, 4)]
        with pytest.raises(
            InvalidInput, match=r"frames\[1\]\.seq: seq 4 is not greater than seq 4"
        ) as caught:
            await core.push_frames(info.session_id, frames, "")
        assert caught.value.location == ("frames", 1, "seq")
        with pytest.raises(InvalidInput, match=r"frames\[1\]\.keypoints\[5\]: keypoints must be finite"):
            await core.push_frames(info.session_id, [FrameInput(0, kp[0]), FrameInput(1, bad[2])], "")
        assert (await core.get_session(info.session_id, "")).last_seq == -1  # a refused batch changes nothing

    with_core(lifter, body, max_frames_per_request=3)


def test_core_sessions_are_private_to_their_key(lifter: Lifter, clip: Clip) -> None:
    async def body(core: LiftingCore) -> None:
        info = await core.open_session(camera(clip), owner_id("alice-key"))
        for call in (
            core.get_session(info.session_id, owner_id("bob-key")),
            core.push_frames(info.session_id, [FrameInput(0, clip.keypoints_px[0])], owner_id("bob-key")),
            core.close_session(info.session_id, owner_id("bob-key")),
            core.get_session(info.session_id, ""),
        ):
            with pytest.raises(SessionNotFound):
                await call
        assert (await core.get_session(info.session_id, owner_id("alice-key"))).last_seq == -1

    with_core(lifter, body)


def test_core_resend_older_than_held_poses_is_seq_conflict(lifter: Lifter, clip: Clip) -> None:
    kp = clip.keypoints_px

    async def body(core: LiftingCore) -> None:
        info = await core.open_session(camera(clip), "")
        for first in range(0, 12, 4):
            await core.push_frames(
                info.session_id, [FrameInput(i, kp[i]) for i in range(first, first + 4)], ""
            )
        again = await core.push_frames(info.session_id, [FrameInput(i, kp[i]) for i in range(7, 12)], "")
        assert [p.seq for p in again] == list(range(7, 12))
        with pytest.raises(SeqConflict, match=r"older than the poses this session keeps.*last seq is 11"):
            await core.push_frames(info.session_id, [FrameInput(2, kp[2])], "")

    with_core(lifter, body, poses_held=5)


def test_core_batch_of_poses_held_frames_can_be_resent_whole(lifter: Lifter, clip: Clip) -> None:
    kp = clip.keypoints_px

    async def body(core: LiftingCore) -> None:
        info = await core.open_session(camera(clip), "")
        await core.push_frames(info.session_id, [FrameInput(i, kp[i]) for i in range(3)], "")
        batch = [FrameInput(i, kp[i]) for i in range(3, 11)]  # poses_held frames
        first = await core.push_frames(info.session_id, batch, "")
        again = await core.push_frames(info.session_id, batch, "")  # its reply was lost: resent whole
        assert [p.seq for p in again] == list(range(3, 11))
        np.testing.assert_array_equal(
            np.stack([p.pose_mm for p in again]), np.stack([p.pose_mm for p in first])
        )
        assert (await core.get_session(info.session_id, "")).frames_seen == 11
        longer = [FrameInput(i, kp[i]) for i in range(11, 20)]  # one frame more than a resend could serve
        with pytest.raises(
            PayloadTooLarge, match=r"9 frames in one session batch; the limit is 8.*POSES_HELD"
        ):
            await core.push_frames(info.session_id, longer, "")
        assert (await core.get_session(info.session_id, "")).last_seq == 10

    with_core(lifter, body, poses_held=8)


def test_core_session_ids_are_unguessable() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) >= 32 for i in ids)  # 24 bytes of randomness, base64url


def test_core_session_of_another_model_window_is_incompatible(lifter: Lifter, clip: Clip) -> None:
    store = MemorySessionStore(60)

    async def body(core: LiftingCore) -> None:
        other = SessionState(
            session_id=new_session_id(), camera=camera(clip), owner="", window=lifter.window + 2
        )
        await store.create(other)
        with pytest.raises(SessionIncompatible, match=f"window {lifter.window + 2}") as caught:
            await core.push_frames(other.session_id, [FrameInput(0, clip.keypoints_px[0])], "")
        assert (caught.value.http_status, caught.value.code) == (409, "session_incompatible")
        with pytest.raises(SessionIncompatible):
            await core.get_session(other.session_id, "")

    with_core(lifter, body, store)


@pytest.mark.parametrize(("live_streams", "passes"), [(0, 3), (1, 19)])
def test_core_sends_a_long_clip_in_pieces_small_while_streams_are_live(
    lifter: Lifter, clip: Clip, live_streams: int, passes: int
) -> None:
    """600 frames: in pieces of `max_batch` (256) windows, or of `clip_chunk` (32) while StreamLift streams
    are open on the worker, so their frames wait for one small pass at most; the poses are the same."""
    kp = np.concatenate([clip.keypoints_px] * (600 // len(clip.keypoints_px) + 1))[:600]

    async def body(core: LiftingCore) -> tuple[np.ndarray, float]:
        core.live_streams = live_streams
        assert core.bulk_pause_s() == (0.001 if live_streams else 0.0)
        out = await core.lift(camera(clip), kp)
        count = core.metrics.registry.get_sample_value("poselift_batch_windows_count")
        return out.poses_mm, float(count or 0)

    poses, count = with_core(lifter, body, max_batch=256, clip_chunk=32, bulk_pause_ms=1.0)
    assert count == passes
    whole, _ = with_core(lifter, body, max_batch=1024, clip_chunk=1024)
    np.testing.assert_allclose(poses, whole, rtol=0, atol=TOLERANCE_MM)


def test_core_tells_the_engine_a_push_is_alone_only_for_one_session_pushing_on_its_own(
    lifter: Lifter, clip: Clip
) -> None:
    """A push may run inline (`Engine.run_windows(alone=True)`) only when its session also made the
    worker's previous push and no other push is under way; sessions taking turns, even one push at a
    time (the in-process store never yields, so their pushes never overlap), still meet in the worker."""
    kp = clip.keypoints_px
    seen: list[bool] = []

    async def body(core: LiftingCore) -> None:
        run_windows = core.engine.run_windows

        async def spy(*args: Any, **kw: Any) -> np.ndarray:
            seen.append(kw.get("alone", False))
            return await run_windows(*args, **kw)

        core.engine.run_windows = spy  # type: ignore[method-assign]
        a, b = [(await core.open_session(camera(clip), "")).session_id for _ in range(2)]
        for session, seq in ((a, 0), (a, 1), (b, 0), (a, 2)):
            await core.push_frames(session, [FrameInput(seq, kp[seq])], "")
        await core.push_frames(a, [FrameInput(3, kp[3])], "")  # a again: alone
        await asyncio.gather(
            core.push_frames(a, [FrameInput(4, kp[4])], ""), core.push_frames(b, [FrameInput(1, kp[1])], "")
        )
        await core.push_frames(a, [FrameInput(5, kp[5])], "")
        # Two pushes of a at once (a client's retry racing its original): the second begins while the first
        # waits for the worker, so it is not alone although it repeats the last session; its commit then
        # loses to the first's and it is recomputed, alone by then.
        await asyncio.gather(
            core.push_frames(a, [FrameInput(6, kp[6])], ""), core.push_frames(a, [FrameInput(7, kp[7])], "")
        )
        assert core.pushes_in_flight == 0

    with_core(lifter, body)
    # a's first push (no previous), a again, b, a after b, a again; then a and b together: a repeats the
    # last session but b's push begins while a's waits for the worker, and b is not the last session; a
    # after b; then a twice at once: alone, not alone (another push in flight), the recomputation alone.
    assert seen == [False, True, False, False, True, True, False, False, True, False, True]
