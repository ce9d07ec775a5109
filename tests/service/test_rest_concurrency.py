"""Concurrency over real HTTP: many sessions at once, two writers on one session, resends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from poselift import Lifter
from tests.service.testkit import (
    TOLERANCE_MM,
    Clip,
    LiveServer,
    frames_body,
    open_session,
    project_segment,
    push_in_batches,
    serve,
)


@pytest.fixture()
def racing_live(store_kind: str, lifter: Lifter, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server whose forward passes wait 50 ms for company (none runs inline on the event loop, which
    would finish a lone push before the other writer's began), so that two writers' pushes overlap: both
    read the session before either commits, and one commit must lose the compare-and-set."""
    with serve(request, store_kind, lifter, batch_wait_ms=50.0, inline_when_idle=False) as server:
        yield server


def push_conflicts(live: LiveServer) -> float:
    """Pushes that lost a commit race and were recomputed (the server's own counter)."""
    return live.app.state.metrics.registry.get_sample_value("poselift_push_conflicts_total") or 0.0


async def _push_session(client: httpx.AsyncClient, clip: Clip, batch: int) -> np.ndarray:
    created = await client.post("/v1/sessions", json=clip.camera())
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    seqs = list(range(len(clip.keypoints_px)))
    poses = []
    for first in range(0, len(seqs), batch):
        body = frames_body(clip, seqs, range(first, min(first + batch, len(seqs))))
        response = await client.post(f"/v1/sessions/{session_id}/frames", json=body)
        assert response.status_code == 200, response.text
        poses += [p["joints"] for p in response.json()["poses"]]
    return np.asarray(poses)


def test_concurrency_32_sessions_each_equal_their_offline_lift(live: LiveServer, lifter: Lifter) -> None:
    clips = [project_segment(k % 17, start=k // 17, frames=24, azimuth_deg=11.0 * k) for k in range(32)]

    async def run() -> list[np.ndarray]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=live.url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*[_push_session(client, c, 4) for c in clips])

    results = asyncio.run(run())
    for k, (clip, poses) in enumerate(zip(clips, results, strict=True)):
        offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
        np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM, err_msg=f"session {k}")


def _two_writers(
    live: LiveServer, clip: Clip, batches_a: list[range], batches_b: list[range]
) -> tuple[str, dict[int, list[list[float]]], list[int]]:
    """Two clients push their batches to one session at the same time; -> (id, seq -> pose, statuses)."""
    seqs = list(range(len(clip.keypoints_px)))
    with httpx.Client(base_url=live.url) as client:
        session_id = open_session(client, clip)
    returned: dict[int, list[list[float]]] = {}
    statuses: list[int] = []

    async def writer(batches: list[range]) -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            for indices in batches:
                response = await client.post(
                    f"/v1/sessions/{session_id}/frames", json=frames_body(clip, seqs, indices)
                )
                statuses.append(response.status_code)
                assert response.status_code in (200, 409), response.text
                for pose in response.json().get("poses", []):
                    if pose["seq"] in returned:  # the same seq twice (a resend): the very same pose
                        assert pose["joints"] == returned[pose["seq"]]
                    returned[pose["seq"]] = pose["joints"]

    async def both() -> None:
        await asyncio.gather(writer(batches_a), writer(batches_b))

    asyncio.run(both())
    return session_id, returned, statuses


def test_concurrency_two_writers_same_frames_lose_and_duplicate_nothing(
    racing_live: LiveServer, lifter: Lifter, clip: Clip
) -> None:
    # Duplicate delivery: both writers send the whole clip in the same batches, racing each other.
    live = racing_live
    batches = [range(i, min(i + 3, len(clip.keypoints_px))) for i in range(0, len(clip.keypoints_px), 3)]
    session_id, returned, statuses = _two_writers(live, clip, batches, batches)
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    assert set(statuses) == {200}
    assert push_conflicts(live) > 0  # the race happened: commits were refused and recomputed
    assert sorted(returned) == list(range(len(clip.keypoints_px)))
    np.testing.assert_allclose(
        np.asarray([returned[s] for s in sorted(returned)]), offline, rtol=0, atol=TOLERANCE_MM
    )
    with httpx.Client(base_url=live.url) as client:
        status = client.get(f"/v1/sessions/{session_id}").json()
    assert status["frames_seen"] == len(clip.keypoints_px)  # each frame entered the history exactly once
    assert status["last_seq"] == len(clip.keypoints_px) - 1


def test_concurrency_two_writers_interleaved_batches_commit_whole_or_not_at_all(
    racing_live: LiveServer, lifter: Lifter, clip: Clip
) -> None:
    # Disjoint batches raced by two writers: a batch overtaken by a later one is refused whole (409);
    # every accepted frame is in the history once, and its pose is the offline pose of the accepted frames.
    # A commit that overwrote a rival's (not compare-and-set) would drop the rival's frames from the history:
    # frames_seen and the poses after it would differ from the accepted frames' offline lift.
    live = racing_live
    batches = [range(i, min(i + 2, len(clip.keypoints_px))) for i in range(0, len(clip.keypoints_px), 2)]
    session_id, returned, statuses = _two_writers(live, clip, batches[0::2], batches[1::2])
    assert push_conflicts(live) > 0 or 409 in statuses  # the writers did race
    accepted = sorted(returned)
    assert accepted, "no batch was accepted"
    offline = lifter.lift(clip.keypoints_px[accepted], clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(
        np.asarray([returned[s] for s in accepted]), offline, rtol=0, atol=TOLERANCE_MM
    )
    with httpx.Client(base_url=live.url) as client:
        status = client.get(f"/v1/sessions/{session_id}").json()
    assert status["frames_seen"] == len(accepted)
    assert status["last_seq"] == accepted[-1]


def test_resend_returns_same_poses_and_changes_nothing(live: LiveServer, lifter: Lifter, clip: Clip) -> None:
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    seqs = list(range(len(clip.keypoints_px)))
    with httpx.Client(base_url=live.url) as client:
        session_id, first = push_in_batches(client, clip, 4, stop=12)
        before = client.get(f"/v1/sessions/{session_id}").json()
        again = client.post(f"/v1/sessions/{session_id}/frames", json=frames_body(clip, seqs, range(8, 12)))
        assert again.status_code == 200, again.text
        assert [p["joints"] for p in again.json()["poses"]] == first[8:12].tolist()
        after = client.get(f"/v1/sessions/{session_id}").json()
        assert (after["last_seq"], after["frames_seen"]) == (before["last_seq"], before["frames_seen"])
        # Half resent, half new: the resent half as stored, the new half lifted on the unchanged history.
        mixed = client.post(f"/v1/sessions/{session_id}/frames", json=frames_body(clip, seqs, range(10, 15)))
        assert mixed.status_code == 200, mixed.text
        _, rest = push_in_batches(client, clip, 7, session_id=session_id, start=15)
        final = client.get(f"/v1/sessions/{session_id}").json()
    poses = np.concatenate([first, np.asarray([p["joints"] for p in mixed.json()["poses"]])[2:], rest])
    np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM)
    assert final["frames_seen"] == len(clip.keypoints_px)


def test_resend_of_never_processed_seq_is_409_naming_last_seq(live: LiveServer, clip: Clip) -> None:
    seqs = [0, 2, 4, 6]
    with httpx.Client(base_url=live.url) as client:
        session_id, _ = push_in_batches(client, clip, 4, seqs=seqs, stop=4)
        response = client.post(f"/v1/sessions/{session_id}/frames", json=frames_body(clip, [3], [0]))
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "seq_conflict"
        assert "last seq is 6" in error["message"] and "seq 3" in error["message"]
        status = client.get(f"/v1/sessions/{session_id}").json()
    assert (status["last_seq"], status["frames_seen"]) == (6, 4)
