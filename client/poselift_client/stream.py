"""A StreamLift client that resumes a broken stream, so every frame gets exactly one answer.

    async with grpc.aio.insecure_channel("localhost:50051") as channel:
        client = StreamLiftClient(channel, pb.Camera(width=1920, height=1080, fps=30))
        async for answer in client.stream(keypoints):          # one (17, 2) or 34-number frame each
            print(answer.seq, answer.joints_mm[:3], answer.rtt_s)

The contract (docs/grpc.md): the first message opens or resumes a session and is answered with `session`
(the last seq the server holds); then every frame gets exactly one reply, in order, and a frame the session
already processed is answered with its stored pose again. So when a stream breaks with a status in
`RESUMABLE`, the client opens a new stream with `resume_session_id` (on the next channel when given several)
and resends every frame it has no answer for, and whatever the server no longer holds; answers to frames
answered before are not yielded twice.

Needs grpcio and protobuf only. Keypoints and scores may be lists or anything with `.reshape` and `.tolist`
(numpy arrays); poses come back as flat lists of 51 numbers (17 × 3 mm).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from poselift_client.gen.poselift.v1 import lifter_pb2 as pb

STREAM_METHOD = "/poselift.v1.PoseLifter/StreamLift"

# The one resume policy (docs/grpc.md, "Which status codes to resume on"): codes that say the connection or
# the replica failed, not the request. UNAVAILABLE: a replica gone or draining, or the store down a moment;
# CANCELLED / UNKNOWN: a connection cut or a proxy ending the call without a status; INTERNAL: gRPC's own
# "Stream removed" (RST_STREAM) when the connection dies mid-message, as nginx reports a killed replica;
# DEADLINE_EXCEEDED: this client's reply timeout (a peer that stopped answering). Resending is always safe
# (the server answers a processed frame from what it holds), so a wrong guess costs a bounded retry. Anything
# else (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ...) refuses
# the request itself and would be refused again.
RESUMABLE: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


def is_resumable(code: grpc.StatusCode) -> bool:
    """Whether a stream that ended with `code` should be resumed (`RESUMABLE`)."""
    return code in RESUMABLE


class StreamBroken(Exception):
    """A stream ended before every frame sent on it was answered: its status `code` and `details`."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def flat(values: Any) -> list[float]:
    """A frame's numbers as one flat list: nested lists, or anything with `.reshape(-1).tolist()`."""
    if hasattr(values, "reshape"):
        return list(values.reshape(-1).tolist())
    out: list[float] = []
    for value in values:
        if isinstance(value, (int, float)):
            out.append(float(value))
        else:
            out.extend(flat(value))
    return out


def frame_request(seq: int, keypoints_px: Any, scores: Any = None) -> pb.StreamLiftRequest:
    """The StreamLift message of one frame: 17 × 2 pixels, optional 17 scores."""
    return pb.StreamLiftRequest(
        frame=pb.Frame(seq=seq, keypoints=flat(keypoints_px), scores=[] if scores is None else flat(scores))
    )


def open_stream(channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()) -> Any:
    """One StreamLift call on `channel`. It takes messages or already serialized bytes (a bench sends the same
    frames on many streams and serializes them once)."""

    def serialize(message: pb.StreamLiftRequest | bytes) -> bytes:
        return message if isinstance(message, bytes) else message.SerializeToString()

    method = channel.stream_stream(STREAM_METHOD, serialize, pb.StreamLiftResponse.FromString)
    return method(metadata=tuple(metadata) or None)


async def read_reply(call: Any, timeout_s: float | None) -> pb.StreamLiftResponse:
    """The call's next reply.

    Raises:
        StreamBroken: no reply within `timeout_s` (DEADLINE_EXCEEDED), or the stream ended or failed (its
            status; UNAVAILABLE for a stream the server ended "OK" with frames unanswered).
    """
    try:
        reply = await asyncio.wait_for(call.read(), timeout_s)
    except TimeoutError:
        raise StreamBroken(grpc.StatusCode.DEADLINE_EXCEEDED, f"no reply within {timeout_s} s") from None
    except grpc.aio.AioRpcError as error:
        raise StreamBroken(error.code(), error.details() or "") from error
    if reply is grpc.aio.EOF:
        code = await call.code()
        raise StreamBroken(
            grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.OK else code,
            f"the stream ended before every frame was answered ({await call.details()})",
        )
    assert isinstance(reply, pb.StreamLiftResponse)
    return reply


@dataclass(frozen=True)
class Answer:
    """The one answer to frame `seq`: its pose (51 numbers, 17 × 3 mm) or an in-band error."""

    seq: int
    joints_mm: list[float] | None
    error_code: str = ""  # e.g. INVALID_ARGUMENT (a bad frame), FAILED_PRECONDITION (an old seq)
    error_message: str = ""
    rtt_s: float = 0.0  # from the frame's first send to its answer
    error_location: str = ""  # the bad part of the frame as JSON text, e.g. '["keypoints",5]'; "" for none


@dataclass(frozen=True)
class Resumed:
    """What the client tells `on_resume` when it resumes: the error that broke the stream and the count."""

    error: StreamBroken
    session_id: str
    attempt: int  # resumes in a row without a new answer, this one included
    total: int  # resumes of this client so far


class StreamLiftClient:
    """Streams a sequence of frames into one session and resumes broken streams until each is answered.

    Args:
        channels: one channel (a replica or a balancer) or several, tried in turn on each new stream.
        camera: the session's camera, to open a new session; or None with `session_id` to continue one.
        session_id: continue this session (`resume_session_id`) instead of opening one.
        api_key: sent as `authorization: Bearer <key>`.
        in_flight: frames sent and not yet answered, at most.
        reply_timeout_s: a reply that takes longer breaks the stream (DEADLINE_EXCEEDED), and it is resumed.
        max_resumes: resumes (or re-opens, before a session exists) in a row that bring no new answer before
            giving up (StreamBroken is raised).
        on_session: called with each `SessionInfo` reply (the first of every stream).
        on_resume: called before each resume.
    """

    def __init__(
        self,
        channels: grpc.aio.Channel | Sequence[grpc.aio.Channel],
        camera: pb.Camera | None = None,
        *,
        session_id: str | None = None,
        api_key: str | None = None,
        in_flight: int = 8,
        reply_timeout_s: float = 5.0,
        max_resumes: int = 5,
        on_session: Callable[[pb.SessionInfo], None] | None = None,
        on_resume: Callable[[Resumed], None] | None = None,
    ):
        if camera is None and not session_id:
            raise ValueError("give a camera to open a session, or the session_id to continue")
        self.channels = list(channels) if isinstance(channels, Sequence) else [channels]
        self.camera = camera
        self.session_id = session_id or ""
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        self.in_flight = in_flight
        self.reply_timeout_s = reply_timeout_s
        self.max_resumes = max_resumes
        self.on_session = on_session
        self.on_resume = on_resume
        self.resumes = 0
        self.window = 0
        self._next_channel = 0

    async def stream(
        self,
        keypoints_px: Sequence[Any],
        scores: Sequence[Any] | None = None,
        *,
        first_seq: int = 0,
        rate_hz: float = 0.0,
    ) -> AsyncIterator[Answer]:
        """Send frame i as seq `first_seq + i` and yield its one answer, in order.

        Args:
            keypoints_px: T frames of 17 × 2 pixels.
            scores: T frames of 17 confidences, or None.
            rate_hz: pace the frames like a camera (frame i leaves i / rate_hz after the stream began);
                0 sends as fast as the in-flight window allows.

        Raises:
            StreamBroken: the stream ended with a status outside `RESUMABLE`, or resuming did not help.
        """
        total = len(keypoints_px)
        answered = 0  # answers are in order: the answered frames are a prefix
        first_sent: dict[int, float] = {}
        in_a_row = 0
        while answered < total:
            before = answered
            try:
                async for answer in self._attempt(
                    keypoints_px, scores, first_seq, rate_hz, answered, first_sent
                ):
                    answered += 1
                    yield answer
                return
            except StreamBroken as error:
                in_a_row = 1 if answered > before else in_a_row + 1
                # Before the session reply there is nothing to resume: the next attempt opens again (on the
                # next channel), which is as safe (an unanswered open leaves at most an idle session behind).
                if not is_resumable(error.code) or in_a_row > self.max_resumes:
                    raise
                self.resumes += 1
                if self.on_resume is not None:
                    self.on_resume(Resumed(error, self.session_id, in_a_row, self.resumes))
                await asyncio.sleep(min(0.1 * 2**in_a_row, 2.0))

    async def _attempt(
        self,
        keypoints_px: Sequence[Any],
        scores: Sequence[Any] | None,
        first_seq: int,
        rate_hz: float,
        answered: int,
        first_sent: dict[int, float],
    ) -> AsyncIterator[Answer]:
        """One stream: open or resume, send every frame not answered yet, yield the new answers."""
        channel = self.channels[self._next_channel % len(self.channels)]
        self._next_channel += 1
        call = open_stream(channel, self.metadata)
        sender: asyncio.Task[None] | None = None
        try:
            if self.session_id:
                await call.write(pb.StreamLiftRequest(resume_session_id=self.session_id))
            else:
                assert self.camera is not None
                await call.write(pb.StreamLiftRequest(open=self.camera))
            reply = await read_reply(call, self.reply_timeout_s)
            if reply.WhichOneof("msg") != "session":
                raise StreamBroken(grpc.StatusCode.INTERNAL, f"expected a session reply, got {reply}")
            info = reply.session
            self.session_id, self.window = info.session_id, info.window
            if self.on_session is not None:
                self.on_session(info)
            # Resend what has no answer yet; if the store lost recent frames (a Redis restart without them),
            # also what it lost, so its history is whole again (their answers were yielded already).
            start = max(0, min(answered, int(info.last_seq) - first_seq + 1))
            window = asyncio.Semaphore(self.in_flight)

            async def send() -> None:
                began = time.perf_counter()
                for index in range(start, len(keypoints_px)):
                    if rate_hz > 0:
                        await asyncio.sleep(max(0.0, began + (index - start) / rate_hz - time.perf_counter()))
                    await window.acquire()
                    first_sent.setdefault(index, time.perf_counter())
                    frame_scores = None if scores is None else scores[index]
                    await call.write(frame_request(first_seq + index, keypoints_px[index], frame_scores))
                await call.done_writing()

            sender = asyncio.create_task(send())
            for index in range(start, len(keypoints_px)):
                reply = await read_reply(call, self.reply_timeout_s)
                window.release()
                if index < answered:
                    continue  # answered on an earlier stream
                yield _answer(reply, first_seq + index, time.perf_counter() - first_sent[index])
            await sender
        except grpc.aio.AioRpcError as error:
            raise StreamBroken(error.code(), error.details() or "") from error
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            call.cancel()


def _answer(reply: pb.StreamLiftResponse, seq: int, rtt_s: float) -> Answer:
    kind = reply.WhichOneof("msg")
    if kind == "pose" and reply.pose.seq == seq:
        return Answer(seq, list(reply.pose.joints), rtt_s=rtt_s)
    if kind == "error" and reply.error.seq == seq:
        return Answer(seq, None, reply.error.code, reply.error.message, rtt_s, reply.error.location)
    raise StreamBroken(grpc.StatusCode.INTERNAL, f"a reply that is not the answer to frame {seq}: {reply}")


async def lift(
    channel: grpc.aio.Channel,
    camera: pb.Camera,
    keypoints_px: Any,
    scores: Any = None,
    *,
    api_key: str | None = None,
    timeout_s: float | None = 60.0,
) -> pb.LiftResponse:
    """One unary `Lift` of a whole clip ((T, 17, 2) pixels) with a deadline; poses are `num_frames × 51`."""
    from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

    frames = len(keypoints_px)
    request = pb.LiftRequest(
        camera=camera,
        num_frames=frames,
        keypoints=flat(keypoints_px),
        scores=[] if scores is None else flat(scores),
    )
    metadata = [("authorization", f"Bearer {api_key}")] if api_key else None
    response: pb.LiftResponse = await pb_grpc.PoseLifterStub(channel).Lift(
        request, metadata=metadata, timeout=timeout_s
    )
    return response
