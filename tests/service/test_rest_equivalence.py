"""Equivalence over real HTTP: /v1/lift == a session in any batching == offline `Lifter.lift`, any replica."""

from __future__ import annotations

import httpx
import numpy as np

from poselift import Lifter
from service.api import create_app
from tests.service.testkit import (
    TOLERANCE_MM,
    Clip,
    LiveServer,
    RedisServer,
    lift_rest,
    make_settings,
    push_in_batches,
)


def test_equivalence_lift_sessions_offline(live: LiveServer, lifter: Lifter, clip: Clip) -> None:
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    with httpx.Client(base_url=live.url, timeout=30) as client:
        np.testing.assert_allclose(lift_rest(client, clip), offline, rtol=0, atol=TOLERANCE_MM)
        for batch in (1, 3, 7):
            _, poses = push_in_batches(client, clip, batch)
            np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM, err_msg=f"batch {batch}")


def test_equivalence_seq_gaps_do_not_change_poses(live: LiveServer, lifter: Lifter, clip: Clip) -> None:
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    seqs = [10 + 3 * i + (i % 3) for i in range(len(clip.keypoints_px))]  # dropped frames between them
    with httpx.Client(base_url=live.url, timeout=30) as client:
        _, poses = push_in_batches(client, clip, 5, seqs=seqs)
    np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM)


def test_equivalence_session_continued_on_second_replica(
    redis_server: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    settings = make_settings(redis_url=redis_server.url)
    half = len(clip.keypoints_px) // 2 + 1  # not a multiple of the batch: the history straddles the hand-over
    with LiveServer(create_app(settings, lifter)) as one, LiveServer(create_app(settings, lifter)) as two:
        with httpx.Client(base_url=one.url, timeout=30) as first:
            session_id, head = push_in_batches(first, clip, 3, stop=half)
        with httpx.Client(base_url=two.url, timeout=30) as second:
            _, tail = push_in_batches(second, clip, 3, session_id=session_id, start=half)
            status = second.get(f"/v1/sessions/{session_id}").json()
    np.testing.assert_allclose(np.concatenate([head, tail]), offline, rtol=0, atol=TOLERANCE_MM)
    assert status["frames_seen"] == len(clip.keypoints_px)
    assert status["last_seq"] == len(clip.keypoints_px) - 1
