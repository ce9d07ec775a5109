"""`poselift.v1.PoseLifter`: decode the message, call the lifting core, encode the answer.

`Lift` answers a whole sequence or ends with a status. `StreamLift` is a session: the first message opens or
resumes it and is answered with `session`; then every frame gets exactly one reply, in order, its pose or an
in-band `FrameError` (`status.IN_BAND`) that leaves the session untouched. Whatever makes the stream itself
unusable ends it with a status (`status.abort`). When the server drains (`closing` set), each stream answers
the frame it is working on, then ends with UNAVAILABLE; the client resumes on another replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from service.errors import InvalidInput, Unavailable
from service.lifting import FrameInput, LiftingCore, SessionInfo
from service.rpc import codec
from service.rpc.status import IN_BAND, abort, status_code

SERVICE = pb.DESCRIPTOR.services_by_name["PoseLifter"].full_name  # "poselift.v1.PoseLifter"
LiftContext = grpc.aio.ServicerContext[pb.LiftRequest, pb.LiftResponse]
StreamContext = grpc.aio.ServicerContext[pb.StreamLiftRequest, pb.StreamLiftResponse]


class _Call:
    """The status one RPC ends with, for the request counter."""

    status = "OK"


class PoseLifterServicer(pb_grpc.PoseLifterServicer):
    """The gRPC face of one `LiftingCore`."""

    def __init__(self, core: LiftingCore, metadata: Sequence[tuple[str, str]] = ()):
        self.core = core
        self.metadata = tuple(metadata)  # initial metadata of every call (a worker's number), if any
        self.closing = asyncio.Event()  # set when the server drains
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        """Lift and StreamLift calls running now."""
        return self._active

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no Lift or StreamLift is running (at most `timeout_s`); True if none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def Lift(
        self, request: pb.LiftRequest | codec.Undecodable, context: LiftContext
    ) -> pb.LiftResponse:
        with self._tracked("Lift") as call:
            try:
                if self.metadata:
                    await context.send_initial_metadata(self.metadata)
                self.core.authenticate(codec.bearer_token(context.invocation_metadata()))
                request = codec.decoded(request)
                camera, mode = codec.camera(request.camera), codec.mode(request)
                self.core.check_lift(camera, mode)  # REST's order: the camera and mode, then the keypoints
                keypoints, scores = codec.sequence(request)
                out = await self.core.lift(camera, keypoints, scores, mode)
                return codec.lift_response(out)
            except Exception as error:
                call.status = status_code(error).name
                await abort(context, error, "Lift")

    async def StreamLift(
        self,
        request_iterator: AsyncIterator[pb.StreamLiftRequest | codec.Undecodable],
        context: StreamContext,
    ) -> AsyncIterator[pb.StreamLiftResponse]:
        with self._tracked("StreamLift") as call:
            closing = asyncio.ensure_future(self.closing.wait())
            self.core.metrics.open_streams.inc()
            self.core.live_streams += 1
            try:
                if self.metadata:
                    await context.send_initial_metadata(self.metadata)
                owner = self.core.authenticate(codec.bearer_token(context.invocation_metadata()))
                info = await self._begin(await self._next(request_iterator, closing), owner)
                yield codec.session(info)
                while (request := await self._next(request_iterator, closing)) is not None:
                    if request.WhichOneof("msg") != "frame":
                        raise InvalidInput(
                            f"after the first message a stream sends only frames, got {_kind(request)}"
                        )
                    yield await self._frame(info.session_id, request.frame, owner)
                if closing.done():
                    raise Unavailable(
                        "the server is shutting down: every frame it read is answered; resume with "
                        f"resume_session_id={info.session_id!r} (through the balancer or on another replica)"
                    )
            except Exception as error:
                call.status = status_code(error).name
                await abort(context, error, "StreamLift")
            finally:
                closing.cancel()
                self.core.metrics.open_streams.dec()
                self.core.live_streams -= 1

    async def _begin(self, request: pb.StreamLiftRequest | None, owner: str) -> SessionInfo:
        """Open or resume the stream's session from its first message."""
        if request is None:
            if self.closing.is_set():
                raise Unavailable("the server is shutting down: open the stream on another replica")
            raise InvalidInput("the stream ended before its first message (open or resume_session_id)")
        kind = request.WhichOneof("msg")
        if kind == "open":
            return await self.core.open_session(codec.camera(request.open), owner)
        if kind == "resume_session_id":
            return await self.core.get_session(request.resume_session_id, owner)
        raise InvalidInput(
            f"a stream's first message must be open or resume_session_id, got {_kind(request)}"
        )

    async def _frame(self, session_id: str, message: pb.Frame, owner: str) -> pb.StreamLiftResponse:
        """One frame's reply: its pose, or an in-band error that left the session as it was."""
        started = time.perf_counter()
        try:
            keypoints, scores = codec.frame(message)
            [output] = await self.core.push_frames(
                session_id, [FrameInput(message.seq, keypoints, scores)], owner
            )
            reply, outcome = codec.pose(output), "pose"
        except IN_BAND as error:
            reply, outcome = codec.frame_error(message.seq, error), error.grpc_code
        self.core.metrics.stream_frames.labels(outcome).inc()
        self.core.metrics.frame_latency.observe(time.perf_counter() - started)
        return reply

    @staticmethod
    async def _next(
        requests: AsyncIterator[pb.StreamLiftRequest | codec.Undecodable], closing: asyncio.Future[Any]
    ) -> pb.StreamLiftRequest | None:
        """The next request; None when the client closed its side or the server began draining."""
        if closing.done():
            return None
        read = asyncio.ensure_future(anext(requests, None))
        try:
            await asyncio.wait((read, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():  # draining, or this call was cancelled: stop reading
                read.cancel()
        if read.done() and not read.cancelled():  # a request that arrived is served even if a drain began
            request = read.result()
            return None if request is None else codec.decoded(request)
        return None

    @contextmanager
    def _tracked(self, method: str) -> Iterator[_Call]:
        """Count the RPC as active (for the drain) and record its status and duration."""
        call = _Call()
        self._active += 1
        self._idle.clear()
        started = time.perf_counter()
        try:
            yield call
        except (asyncio.CancelledError, GeneratorExit):  # deadline passed, or the client went away
            call.status = grpc.StatusCode.CANCELLED.name
            raise
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()
            route = f"/{SERVICE}/{method}"
            self.core.metrics.requests.labels(route, "GRPC", call.status).inc()
            self.core.metrics.latency.labels(route, "GRPC").observe(time.perf_counter() - started)


def add_to_server(servicer: PoseLifterServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` (as the generated `add_PoseLifterServicer_to_server`, with decoders that never
    raise: an undecodable message is bad input, answered INVALID_ARGUMENT by the servicer)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Lift": grpc.unary_unary_rpc_method_handler(
            servicer.Lift,
            request_deserializer=codec.decoder(pb.LiftRequest),
            response_serializer=pb.LiftResponse.SerializeToString,
        ),
        "StreamLift": grpc.stream_stream_rpc_method_handler(
            servicer.StreamLift,
            request_deserializer=codec.decoder(pb.StreamLiftRequest),
            response_serializer=pb.StreamLiftResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _kind(request: pb.StreamLiftRequest) -> str:
    kind = request.WhichOneof("msg")
    return "an empty message" if kind is None else repr(kind)
