"""SIGTERM to `poselift serve` with streams open: health NOT_SERVING first, every frame the server took is
answered, the streams end with UNAVAILABLE and resume elsewhere, the process exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from tests.service.rpc.rpckit import (
    Replica,
    RpcLive,
    frame,
    offline,
    open_request,
    poses_of,
    resume_request,
    stream,
)
from tests.service.testkit import TOLERANCE_MM, Clip, RedisServer, make_settings

STREAMS, FRAME_GAP_S = 2, 0.02


@dataclass
class Observed:
    replies: list[pb.StreamLiftResponse] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""
    ended_s: float = 0.0


def run_stream(stub: pb_grpc.PoseLifterStub, clip: Clip, seen: Observed) -> None:
    def requests() -> Iterator[pb.StreamLiftRequest]:  # a live camera: one frame every FRAME_GAP_S
        yield open_request(clip)
        for i in range(len(clip.keypoints_px)):
            time.sleep(FRAME_GAP_S)
            yield frame(clip, i)

    try:
        for reply in stub.StreamLift(requests(), timeout=60):
            seen.replies.append(reply)
        seen.code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        seen.code, seen.details = error.code(), error.details()
    seen.ended_s = time.monotonic()


def test_graceful_shutdown_sigterm_with_streams_open(
    redis_server: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    replica = Replica(redis_server.url)
    health_events: list[tuple[float, int]] = []
    try:
        replica.wait_ready()
        probe = [sys.executable, "-m", "service.healthcheck"]  # the image's HEALTHCHECK
        assert subprocess.run(probe, env=replica.env, capture_output=True, timeout=30).returncode == 0
        with grpc.insecure_channel(replica.target) as channel:
            stub = pb_grpc.PoseLifterStub(channel)

            def watch() -> None:
                try:
                    request = health_pb2.HealthCheckRequest(service="poselift.v1.PoseLifter")
                    for reply in health_pb2_grpc.HealthStub(channel).Watch(request, timeout=60):
                        health_events.append((time.monotonic(), reply.status))
                except grpc.RpcError:
                    pass

            seen = [Observed() for _ in range(STREAMS)]
            threads = [threading.Thread(target=watch)]
            threads += [threading.Thread(target=run_stream, args=(stub, clip, s)) for s in seen]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while min(len(s.replies) for s in seen) < 10:  # both streams well under way
                assert time.monotonic() < deadline, [s.code for s in seen]
                time.sleep(0.01)
            replica.process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(30)
        assert replica.process.wait(20) == 0, replica.output()
        assert "gRPC server stopped" in replica.output()
        assert subprocess.run(probe, env=replica.env, capture_output=True, timeout=30).returncode == 1
    finally:
        replica.stop()

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_events[0][1] == serving
    went_down = next(t for t, status in health_events if status == not_serving)
    total = len(clip.keypoints_px)
    expected = offline(lifter, clip)
    with (
        RpcLive(make_settings(redis_url=redis_server.url), lifter) as other,
        grpc.insecure_channel(other.target) as ch,
    ):
        for s in seen:
            assert s.code == grpc.StatusCode.UNAVAILABLE, (s.code, s.details)
            assert "shutting down" in s.details and "resume_session_id" in s.details
            assert went_down < s.ended_s  # NOT_SERVING first, then the streams end
            seqs, poses = poses_of(s.replies[1:])
            assert seqs == list(range(len(seqs))) and 10 <= len(seqs) < total  # in order, none skipped
            np.testing.assert_allclose(poses, expected[: len(seqs)], rtol=0, atol=TOLERANCE_MM)
            # Every frame the server took was answered: what it stored ends at the last pose the client got.
            session_id = s.replies[0].session.session_id
            rest = stream(
                pb_grpc.PoseLifterStub(ch),
                [resume_request(session_id), *(frame(clip, i) for i in range(len(seqs), total))],
            )
            assert rest[0].session.last_seq == len(seqs) - 1
            np.testing.assert_allclose(poses_of(rest)[1], expected[len(seqs) :], rtol=0, atol=TOLERANCE_MM)


def test_serve_grpc_port_in_use_exits_1_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        replica = Replica(POSELIFT_GRPC_PORT=str(taken.getsockname()[1]))
        try:
            assert replica.process.wait(60) == 1
            assert f"cannot serve gRPC on 127.0.0.1:{taken.getsockname()[1]}" in replica.output()
        finally:
            replica.stop()
