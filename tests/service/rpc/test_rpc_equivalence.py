"""gRPC on loopback gives the poses of REST and of the offline lift: Lift, StreamLift, resume anywhere."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from tests.service.rpc.rpckit import (
    RpcLive,
    frame,
    lift_request,
    offline,
    open_request,
    poses_of,
    resume_request,
    stream,
)
from tests.service.testkit import TOLERANCE_MM, Clip, RedisServer, make_settings, push_in_batches


def test_rpc_lift_and_stream_equal_rest_and_offline(
    rpc_live: RpcLive, stub: pb_grpc.PoseLifterStub, lifter: Lifter, clip: Clip
) -> None:
    expected = offline(lifter, clip)
    lifted = stub.Lift(lift_request(clip), timeout=30)
    assert lifted.num_frames == len(clip.keypoints_px)
    poses = np.asarray(lifted.poses).reshape(-1, 17, 3)
    np.testing.assert_allclose(poses, expected, rtol=0, atol=TOLERANCE_MM)

    kp32 = np.asarray(clip.keypoints_px, np.float32)  # what the gRPC client sent, to REST as well
    with httpx.Client(base_url=rpc_live.url, timeout=30) as client:
        rest = client.post("/v1/lift", json={**clip.camera(), "keypoints": kp32.tolist()}).json()["poses"]
    np.testing.assert_allclose(poses, rest, rtol=0, atol=TOLERANCE_MM)

    replies = stream(stub, [open_request(clip), *(frame(clip, i) for i in range(len(kp32)))])
    assert replies[0].WhichOneof("msg") == "session"
    assert replies[0].session.last_seq == -1 and replies[0].session.window == lifter.window
    seqs, streamed = poses_of(replies[1:])
    assert seqs == list(range(len(kp32))) and len(replies) == len(kp32) + 1
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=TOLERANCE_MM)


def test_rpc_stream_seq_gaps_and_resends(stub: pb_grpc.PoseLifterStub, lifter: Lifter, clip: Clip) -> None:
    expected = offline(lifter, clip, range(20))
    seqs = [5 + 3 * i + (i % 2) for i in range(20)]  # dropped frames between them
    requests = [open_request(clip), *(frame(clip, i, seqs[i]) for i in range(20))]
    requests += [frame(clip, 18, seqs[18]), frame(clip, 19, seqs[19])]  # a retry after a lost reply
    answered, poses = poses_of(stream(stub, requests))
    assert answered == seqs + seqs[18:]
    np.testing.assert_allclose(poses[:20], expected, rtol=0, atol=TOLERANCE_MM)
    np.testing.assert_array_equal(poses[20:], poses[18:20])  # the stored poses, exactly


def test_rpc_resume_on_another_replica_and_across_transports(
    redis_server: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    expected = offline(lifter, clip)
    total, cut = len(clip.keypoints_px), 23
    settings = make_settings(redis_url=redis_server.url)
    with RpcLive(settings, lifter) as one, RpcLive(settings, lifter) as two:
        with grpc.insecure_channel(one.target) as channel:
            head = stream(
                pb_grpc.PoseLifterStub(channel), [open_request(clip), *(frame(clip, i) for i in range(cut))]
            )
        session_id = head[0].session.session_id
        with grpc.insecure_channel(two.target) as channel:
            # The client lost the replies of the last two frames: it resends them, then goes on.
            tail = stream(
                pb_grpc.PoseLifterStub(channel),
                [resume_request(session_id), *(frame(clip, i) for i in range(cut - 2, 40))],
            )
        assert tail[0].session.session_id == session_id and tail[0].session.last_seq == cut - 1
        seqs, poses = poses_of(head[1:] + tail[1:])
        assert seqs == [*range(cut), *range(cut - 2, 40)]
        np.testing.assert_array_equal(poses[cut : cut + 2], poses[cut - 2 : cut])
        np.testing.assert_allclose(
            np.delete(poses, [cut, cut + 1], 0), expected[:40], rtol=0, atol=TOLERANCE_MM
        )

        with httpx.Client(base_url=one.url, timeout=30) as client:  # REST continues the gRPC session
            _, rest = push_in_batches(client, clip, 7, session_id=session_id, start=40)
            status = client.get(f"/v1/sessions/{session_id}").json()
    np.testing.assert_allclose(rest, expected[40:], rtol=0, atol=TOLERANCE_MM)
    assert status["frames_seen"] == total and status["last_seq"] == total - 1  # no frame entered twice


def test_rpc_trajectory_visible_and_offline_mode_match_the_python_api(
    stub: pb_grpc.PoseLifterStub, lifter: Lifter, clip: Clip
) -> None:
    kp = np.asarray(clip.keypoints_px, np.float32).astype(np.float64)
    camera = pb.Camera(
        width=clip.width, height=clip.height, fps=clip.fps, layout=pb.LAYOUT_H36M17, focal_px=1100.0
    )
    expected = lifter.lift_full(kp, clip.width, clip.height, clip.fps, focal_px=1100.0)
    assert expected.root_mm is not None
    lifted = stub.Lift(lift_request(clip, camera=camera), timeout=30)
    np.testing.assert_allclose(np.reshape(lifted.trajectory, (-1, 3)), expected.root_mm, rtol=1e-5, atol=0.01)
    np.testing.assert_allclose(lifted.visible, expected.visible, atol=1e-6)

    replies = stream(stub, [pb.StreamLiftRequest(open=camera), *(frame(clip, i) for i in range(len(kp)))])
    roots = [list(r.pose.root) for r in replies if r.WhichOneof("msg") == "pose"]
    np.testing.assert_allclose(roots, expected.root_mm, rtol=1e-5, atol=0.01)

    off = lifter.lift_full(kp, clip.width, clip.height, clip.fps, mode="offline")
    lifted_off = stub.Lift(lift_request(clip, mode=pb.MODE_OFFLINE), timeout=30)
    np.testing.assert_allclose(
        np.reshape(lifted_off.poses, (-1, 17, 3)), off.poses_mm, rtol=0, atol=TOLERANCE_MM
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Lift(lift_request(clip, mode=7), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown mode 7" in str(
        caught.value.details()
    )
