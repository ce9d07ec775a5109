"""Bad input over gRPC: every class gets its status code (or an in-band FrameError); the server serves on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
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
from tests.service.testkit import TOLERANCE_MM, Clip, RedisServer, make_settings

KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789"
MAX_FRAMES, MAX_BYTES = 8, 20_000


@pytest.fixture(scope="module")
def limited(lifter: Lifter) -> Iterator[RpcLive]:
    """One server for the whole module (memory store): small limits, so they are cheap to hit."""
    settings = make_settings(max_frames_per_request=MAX_FRAMES, max_body_bytes=MAX_BYTES, max_sessions=50)
    with RpcLive(settings, lifter) as live:
        yield live


@pytest.fixture()
def stub(limited: RpcLive) -> Iterator[pb_grpc.PoseLifterStub]:
    with grpc.insecure_channel(limited.target) as channel:
        yield pb_grpc.PoseLifterStub(channel)


def expect_status(call: Any, code: grpc.StatusCode, *words: str) -> str:
    """Run `call`, expect it to fail with `code` and `words` in the details; returns the details."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == code, (error.code(), error.details())
    for word in words:
        assert word in error.details(), error.details()
    return str(error.details())


def assert_still_serving(stub: pb_grpc.PoseLifterStub, clip: Clip) -> None:
    assert stub.Lift(lift_request(clip, 3), timeout=10).num_frames == 3


def test_rpc_errors_lift_bad_requests(stub: pb_grpc.PoseLifterStub, clip: Clip) -> None:
    kp = np.asarray(clip.keypoints_px[:3], np.float32).reshape(-1)
    nan = kp.copy()
    nan[4] = np.nan
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[pb.LiftRequest, grpc.StatusCode, tuple[str, ...]]] = [
        (lift_request(clip, 3, keypoints=kp[:-2].tolist()), invalid, ("keypoints", "102 expected")),
        (lift_request(clip, 3, num_frames=4), invalid, ("keypoints", "136 expected")),
        (lift_request(clip, 3, keypoints=nan.tolist()), invalid, ("finite",)),
        (lift_request(clip, 3, camera=pb.Camera(width=0, height=1080)), invalid, ("width",)),
        (lift_request(clip, 3, camera=pb.Camera(width=1920, height=1080, layout=7)), invalid, ("layout",)),
        (lift_request(clip, 3, camera=pb.Camera(width=1920, height=1080, fps=-5)), invalid, ("fps",)),
        (lift_request(clip, 0), invalid, ("no frames",)),
        (lift_request(clip, 3, scores=[1.5] * 51), invalid, ("scores", "[0, 1]")),
        (lift_request(clip, 3, scores=[1.0] * 50), invalid, ("scores", "51 expected")),
        (lift_request(clip, MAX_FRAMES + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, (f"limit is {MAX_FRAMES}",)),
        (  # 27 kB > POSELIFT_MAX_BODY_BYTES: refused by gRPC's message size limit before any decoding
            lift_request(clip, 3, num_frames=200, keypoints=[500.0] * 200 * 34),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ("message larger than max",),
        ),
    ]
    for request, code, words in cases:
        expect_status(lambda r=request: stub.Lift(r, timeout=10), code, *words)
    assert (
        stub.Lift(lift_request(clip, 3, camera=pb.Camera(width=1920, height=1080)), timeout=10).num_frames
        == 3
    )
    assert_still_serving(stub, clip)


def test_rpc_errors_deadline_cancels_the_call_on_the_server(
    limited: RpcLive, stub: pb_grpc.PoseLifterStub, clip: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(30)

    assert limited.core is not None
    monkeypatch.setattr(limited.core.engine, "run_windows", stuck)
    started = time.monotonic()
    expect_status(lambda: stub.Lift(lift_request(clip, 3), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 2
    monkeypatch.undo()
    labels = {"route": "/poselift.v1.PoseLifter/Lift", "method": "GRPC", "status": "CANCELLED"}
    deadline = time.monotonic() + 5
    while not limited.core.metrics.registry.get_sample_value("poselift_requests_total", labels):
        assert time.monotonic() < deadline, "the server did not cancel the call at its deadline"
        time.sleep(0.05)
    assert_still_serving(stub, clip)


def test_rpc_errors_undecodable_messages_are_invalid_argument(limited: RpcLive, clip: Clip) -> None:
    garbage = b"\xff\xff\xff\xff"  # not a protobuf message: the gRPC analogue of a body that is no JSON
    with grpc.insecure_channel(limited.target) as channel:
        lift = channel.unary_unary("/poselift.v1.PoseLifter/Lift")
        streaming = channel.stream_stream("/poselift.v1.PoseLifter/StreamLift")
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        expect_status(lambda: lift(garbage, timeout=10), invalid, "not a valid poselift.v1.LiftRequest")
        opened = open_request(clip).SerializeToString()
        expect_status(
            lambda: list(streaming(iter([opened, garbage]), timeout=10)),
            invalid,
            "poselift.v1.StreamLiftRequest",
        )
        assert_still_serving(pb_grpc.PoseLifterStub(channel), clip)


def test_rpc_errors_stream_ending_statuses(stub: pb_grpc.PoseLifterStub, clip: Clip) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[Sequence[pb.StreamLiftRequest], grpc.StatusCode, tuple[str, ...]]] = [
        ([frame(clip, 0)], invalid, ("first message", "open or resume_session_id", "'frame'")),
        ([pb.StreamLiftRequest()], invalid, ("first message", "an empty message")),
        ([], invalid, ("ended before its first message",)),
        ([open_request(clip, width=0)], invalid, ("width",)),
        ([open_request(clip, layout=9)], invalid, ("layout",)),
        ([resume_request("no-such-session-0123456789")], grpc.StatusCode.NOT_FOUND, ("no session",)),
        ([resume_request("../x")], grpc.StatusCode.NOT_FOUND, ("no session",)),
        ([open_request(clip), frame(clip, 0), open_request(clip)], invalid, ("only frames", "'open'")),
        (
            [open_request(clip), pb.StreamLiftRequest(frame=pb.Frame(seq=0, keypoints=[1.0] * 6000))],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ("message larger than max",),
        ),
    ]
    for requests, code, words in cases:
        expect_status(lambda r=requests: stream(stub, r), code, *words)
    assert_still_serving(stub, clip)


def test_rpc_errors_bad_frames_in_band_leave_history_untouched(
    stub: pb_grpc.PoseLifterStub, lifter: Lifter, clip: Clip
) -> None:
    good = [
        frame(clip, i, seq=2 * i) for i in range(12)
    ]  # even seqs; the bad frames' odd ones are never taken
    nan = list(good[6].frame.keypoints)
    nan[3] = float("nan")
    bad = {  # inserted before good frame i: (request, code, words)
        3: (frame(clip, 3, seq=5, keypoints=[1.0] * 30), "INVALID_ARGUMENT", ("keypoints", "34 expected")),
        5: (frame(clip, 5, seq=9, scores=[2.0] * 17), "INVALID_ARGUMENT", ("scores", "[0, 1]")),
        6: (frame(clip, 6, seq=11, keypoints=nan), "INVALID_ARGUMENT", ("finite",)),
        8: (frame(clip, 8, seq=2**63), "INVALID_ARGUMENT", ("seq",)),
        10: (frame(clip, 10, seq=5), "FAILED_PRECONDITION", ("seq 5", "never processed", "last seq is 18")),
    }
    requests = [open_request(clip)]
    for i, request in enumerate(good):
        if i in bad:
            requests.append(bad[i][0])
        requests.append(request)
    replies = stream(stub, requests)[1:]
    assert len(replies) == len(requests) - 1  # exactly one reply per frame, in order
    errors = [r.error for r in replies if r.WhichOneof("msg") == "error"]
    assert [e.seq for e in errors] == [bad[i][0].frame.seq for i in sorted(bad)]
    for error, i in zip(errors, sorted(bad), strict=True):
        assert error.code == bad[i][1], error
        for word in bad[i][2]:
            assert word in error.message, error
        assert not error.message.startswith("frames["), error  # REST's batch wording does not leak
    seqs, poses = poses_of(replies)
    assert seqs == [2 * i for i in range(12)]
    np.testing.assert_allclose(poses, offline(lifter, clip, range(12)), rtol=0, atol=TOLERANCE_MM)
    assert_still_serving(stub, clip)


def test_rpc_errors_too_many_sessions_is_resource_exhausted(lifter: Lifter, clip: Clip) -> None:
    with RpcLive(make_settings(max_sessions=1), lifter) as live, grpc.insecure_channel(live.target) as ch:
        stub = pb_grpc.PoseLifterStub(ch)
        assert stream(stub, [open_request(clip)])[0].session.session_id
        expect_status(
            lambda: stream(stub, [open_request(clip)]), grpc.StatusCode.RESOURCE_EXHAUSTED, "maximum"
        )


def test_rpc_errors_unexpected_exception_is_internal_and_logged(
    limited: RpcLive,
    stub: pb_grpc.PoseLifterStub,
    clip: Clip,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise ZeroDivisionError("secret internals")

    assert limited.core is not None
    monkeypatch.setattr(limited.core, "lift", broken)
    monkeypatch.setattr(limited.core, "push_frames", broken)
    details = expect_status(lambda: stub.Lift(lift_request(clip, 3), timeout=10), grpc.StatusCode.INTERNAL)
    assert details == "internal error; it has been logged"  # nothing of the exception leaks
    expect_status(lambda: stream(stub, [open_request(clip), frame(clip, 0)]), grpc.StatusCode.INTERNAL)
    monkeypatch.undo()
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert {r.getMessage() for r in logged} == {"unhandled error in Lift", "unhandled error in StreamLift"}
    assert_still_serving(stub, clip)


def test_rpc_errors_concurrent_call_limit_is_resource_exhausted(lifter: Lifter, clip: Clip) -> None:
    with (
        RpcLive(make_settings(grpc_max_concurrent_rpcs=1), lifter) as live,
        grpc.insecure_channel(live.target) as ch,
    ):
        stub = pb_grpc.PoseLifterStub(ch)
        release = threading.Event()

        def held_open() -> Iterator[pb.StreamLiftRequest]:
            yield open_request(clip)
            release.wait(10)

        replies = stub.StreamLift(held_open(), timeout=20)
        assert next(replies).WhichOneof("msg") == "session"  # one call in flight: the limit
        expect_status(lambda: stub.Lift(lift_request(clip, 3), timeout=5), grpc.StatusCode.RESOURCE_EXHAUSTED)
        release.set()
        assert list(replies) == []
        assert_still_serving(stub, clip)


def test_rpc_errors_auth_metadata_and_session_ownership(lifter: Lifter, clip: Clip) -> None:
    with (
        RpcLive(make_settings(api_keys=(KEY_A, KEY_B)), lifter) as live,
        grpc.insecure_channel(live.target) as ch,
    ):
        stub = pb_grpc.PoseLifterStub(ch)
        alice = [("authorization", f"Bearer {KEY_A}")]
        bob = [("authorization", f"bearer {KEY_B}")]
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        for metadata, words in (
            (None, ("Authorization: Bearer <key>",)),
            ([("authorization", "Bearer not-a-key-123")], ("unknown API key",)),
            ([("authorization", "Basic YWxpY2U6cHc=")], ()),
        ):
            expect_status(
                lambda m=metadata: stub.Lift(lift_request(clip, 3), metadata=m), unauthenticated, *words
            )
            expect_status(lambda m=metadata: stream(stub, [open_request(clip)], m), unauthenticated, *words)
        assert stub.Lift(lift_request(clip, 3), metadata=alice, timeout=10).num_frames == 3
        session_id = stream(stub, [open_request(clip), frame(clip, 0)], alice)[0].session.session_id
        # Bob's key sees no such session: the same NOT_FOUND as an id that never existed.
        expect_status(lambda: stream(stub, [resume_request(session_id)], bob), grpc.StatusCode.NOT_FOUND)
        resumed = stream(stub, [resume_request(session_id), frame(clip, 1)], alice)
        assert resumed[0].session.last_seq == 0 and resumed[1].pose.seq == 1
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no key


def test_rpc_errors_store_down_unavailable_health_and_recovery(
    own_redis: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    with (
        RpcLive(make_settings(redis_url=own_redis.url), lifter) as live,
        grpc.insecure_channel(live.target) as ch,
    ):
        stub = pb_grpc.PoseLifterStub(ch)
        health = health_pb2_grpc.HealthStub(ch)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "poselift.v1.PoseLifter"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == serving
        session_id = stream(stub, [open_request(clip), frame(clip, 0)])[0].session.session_id
        own_redis.stop()
        unavailable = grpc.StatusCode.UNAVAILABLE
        expect_status(lambda: stream(stub, [open_request(clip)]), unavailable, "session store")
        expect_status(lambda: stream(stub, [resume_request(session_id)]), unavailable, "session store")
        assert_still_serving(stub, clip)  # Lift needs no store
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert (
            next(s.status for s in watch if s.status != serving) == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        own_redis.start()  # empty (no persistence): the replica recovers by itself
        assert next(s.status for s in watch if s.status == serving) == serving
        watch.cancel()
        assert stream(stub, [open_request(clip), frame(clip, 0)])[1].pose.seq == 0


def test_rpc_reflection_lists_the_services(limited: RpcLive) -> None:
    with grpc.insecure_channel(limited.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"poselift.v1.PoseLifter", "grpc.health.v1.Health"} <= services
