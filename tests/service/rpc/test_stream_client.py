"""poselift_client's StreamLiftClient and REST helper against a real server on loopback: every frame gets
one answer equal to offline lifting, a stream that cannot open on a dead target opens on the next one, and a
continued session resends what the server already holds without a frame counted twice."""

from __future__ import annotations

import asyncio
import socket

import grpc
import numpy as np
import pytest
from poselift_client import pb
from poselift_client.rest import RestClient, RestError
from poselift_client.stream import RESUMABLE, Answer, Resumed, StreamBroken, StreamLiftClient

from poselift import Lifter
from tests.service.rpc.rpckit import RpcLive, camera, offline
from tests.service.testkit import TOLERANCE_MM, Clip


def _dead_target() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def _run(client: StreamLiftClient, clip: Clip, frames: int, **options: object) -> list[Answer]:
    return [answer async for answer in client.stream(clip.keypoints_px[:frames], **options)]  # type: ignore[arg-type]


def _poses(answers: list[Answer]) -> np.ndarray:
    return np.asarray([answer.joints_mm for answer in answers], np.float32).reshape(-1, 17, 3)


def test_stream_client_answers_every_frame_after_a_dead_target(
    rpc_live: RpcLive, lifter: Lifter, clip: Clip
) -> None:
    resumes: list[Resumed] = []

    async def main() -> list[Answer]:
        async with (
            grpc.aio.insecure_channel(_dead_target()) as dead,
            grpc.aio.insecure_channel(rpc_live.target) as live,
        ):
            client = StreamLiftClient([dead, live], camera(clip), in_flight=4, on_resume=resumes.append)
            return await _run(client, clip, 40)

    answers = asyncio.run(main())
    assert [a.seq for a in answers] == list(range(40)) and all(a.error_code == "" for a in answers)
    assert len(resumes) == 1 and resumes[0].error.code == grpc.StatusCode.UNAVAILABLE
    np.testing.assert_allclose(_poses(answers), offline(lifter, clip, range(40)), rtol=0, atol=TOLERANCE_MM)


def test_stream_client_continues_a_session_without_double_counting(
    rpc_live: RpcLive, lifter: Lifter, clip: Clip
) -> None:
    async def main() -> tuple[list[Answer], list[Answer], StreamLiftClient]:
        async with grpc.aio.insecure_channel(rpc_live.target) as channel:
            first = StreamLiftClient(channel, camera(clip))
            head = await _run(first, clip, 20)
            # A second client continues the session with the whole clip: the 20 frames the server holds
            # are answered from what it stored, the rest lifted on that history.
            second = StreamLiftClient(channel, session_id=first.session_id)
            return head, await _run(second, clip, 50), second

    head, whole, second = asyncio.run(main())
    assert second.window > 0 and second.resumes == 0
    assert [a.seq for a in whole] == list(range(50))
    expected = offline(lifter, clip, range(50))
    np.testing.assert_allclose(_poses(head), expected[:20], rtol=0, atol=TOLERANCE_MM)
    np.testing.assert_allclose(_poses(whole), expected, rtol=0, atol=TOLERANCE_MM)


def test_stream_client_gives_up_on_a_final_status(rpc_live: RpcLive) -> None:
    async def main() -> None:
        async with grpc.aio.insecure_channel(rpc_live.target) as channel:
            client = StreamLiftClient(channel, session_id="no-such-session")
            await _run(client, Clip(np.zeros((3, 17, 2), np.float32)), 3)

    with pytest.raises(StreamBroken) as broken:
        asyncio.run(main())
    assert broken.value.code == grpc.StatusCode.NOT_FOUND and broken.value.code not in RESUMABLE


def test_stream_client_bad_frame_is_an_answer(rpc_live: RpcLive, clip: Clip) -> None:
    keypoints = np.array(clip.keypoints_px[:6], np.float32)
    keypoints[3, 5] = np.nan

    async def main() -> list[Answer]:
        async with grpc.aio.insecure_channel(rpc_live.target) as channel:
            client = StreamLiftClient(channel, pb.Camera(width=clip.width, height=clip.height, fps=clip.fps))
            return [answer async for answer in client.stream(keypoints)]

    answers = asyncio.run(main())
    assert [a.seq for a in answers] == list(range(6))
    assert answers[3].joints_mm is None and answers[3].error_code == "INVALID_ARGUMENT"
    assert all(a.joints_mm is not None for i, a in enumerate(answers) if i != 3)


def test_rest_helper_lifts_and_refuses_with_the_servers_code(
    rpc_live: RpcLive, lifter: Lifter, clip: Clip
) -> None:
    api = RestClient(rpc_live.url)
    kp = np.asarray(clip.keypoints_px[:10], np.float32)
    lifted = api.lift(kp, clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(lifted["poses"], offline(lifter, clip, range(10)), rtol=0, atol=TOLERANCE_MM)
    session = api.open_session(clip.width, clip.height, clip.fps)
    poses = api.push_frames(session["session_id"], [{"seq": 5, "keypoints": kp[0]}])["poses"]
    assert [p["seq"] for p in poses] == [5]
    with pytest.raises(RestError) as refused:
        api.push_frames(session["session_id"], [{"seq": 2, "keypoints": kp[1]}])
    assert (refused.value.status, refused.value.code) == (409, "seq_conflict")
    api.close_session(session["session_id"])
    with pytest.raises(RestError) as gone:
        api.session(session["session_id"])
    assert gone.value.status == 404
