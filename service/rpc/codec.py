"""Messages of `poselift.v1` to and from the lifting core's plain values; nothing here decides anything.

Flat `repeated float` fields are reshaped to the core's arrays ((T, 17, 2) keypoints, (T, 17) scores) after
their lengths are checked; an unset layout or fps means what REST means when they are left out (h36m17,
`DEFAULT_FPS`), as proto3 cannot tell 0 from unset.

Errors are located in the REST bodies' field names (`service.errors`), which the messages share where they
coincide: a camera field is `width` (REST's bodies are flat), `cx` and `cy` are `principal_px[0]` and `[1]`,
`num_frames` is the frame count of `keypoints`. A stream's frame is located within itself (`keypoints[5]`,
`seq`): what REST locates at `frames[i]` of a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb

from poselift.sequence import SequenceOutput
from poselift.skeleton import NUM_JOINTS
from service.errors import InvalidInput, MalformedRequest, ServiceError
from service.lifting import FrameOutput, SessionInfo
from service.rpc.status import location_text
from service.sessions import DEFAULT_FPS, Camera

LAYOUTS = {pb.LAYOUT_UNSPECIFIED: "h36m17", pb.LAYOUT_H36M17: "h36m17", pb.LAYOUT_COCO17: "coco17"}
M = TypeVar("M", bound=Message)


class Undecodable:
    """What a request whose bytes are no valid message decodes to, so that it is answered INVALID_ARGUMENT
    like any bad input (gRPC itself would answer UNKNOWN or INTERNAL)."""

    def __init__(self, error: MalformedRequest):
        self.error = error


def decoder(message_type: type[M]) -> Callable[[bytes], M | Undecodable]:
    """A request deserializer for `message_type` that never raises."""

    def decode(data: bytes) -> M | Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError as error:
            name = message_type.DESCRIPTOR.full_name
            return Undecodable(MalformedRequest(f"the request is not a valid {name} message ({error})"))

    return decode


def decoded(request: M | Undecodable) -> M:
    """The request, or MalformedRequest if its bytes were not a valid message."""
    if isinstance(request, Undecodable):
        raise request.error
    return request


def camera(message: pb.Camera) -> Camera:
    """The core's camera; an unknown layout number is InvalidInput (sizes and fps are the core's to check)."""
    layout = LAYOUTS.get(message.layout)
    if layout is None:
        raise InvalidInput(
            f"unknown layout {message.layout}; expected LAYOUT_H36M17 (1) or LAYOUT_COCO17 (2)", ("layout",)
        )
    principal = (float(message.cx), float(message.cy)) if message.cx or message.cy else None
    return Camera(
        layout,
        float(message.width),
        float(message.height),
        float(message.fps or DEFAULT_FPS),
        float(message.focal_px) if message.focal_px else None,
        principal,
    )


def mode(request: pb.LiftRequest) -> str:
    """The Lift request's mode as the core names it; an unknown number is InvalidInput."""
    if request.mode == pb.MODE_OFFLINE:
        return "offline"
    if request.mode == pb.MODE_CAUSAL:
        return "causal"
    raise InvalidInput(
        f"unknown mode {request.mode}; expected MODE_CAUSAL (0) or MODE_OFFLINE (1)", ("mode",)
    )


def _reshape(values: Iterable[float], frames: int, per_frame: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    want = frames * int(np.prod(per_frame))
    if array.size != want:
        shape = " x ".join(str(n) for n in per_frame)
        raise InvalidInput(
            f"{name} holds {array.size} floats; {frames} frame(s) x {shape} = {want} expected", (name,)
        )
    return array.reshape(frames, *per_frame)


def sequence(request: pb.LiftRequest) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, 17, 2) keypoints and (T, 17) scores (None if none were sent) of a Lift request."""
    frames = request.num_frames
    keypoints = _reshape(request.keypoints, frames, (NUM_JOINTS, 2), "keypoints")
    scores = _reshape(request.scores, frames, (NUM_JOINTS,), "scores") if len(request.scores) else None
    return keypoints, scores


def frame(message: pb.Frame) -> tuple[np.ndarray, np.ndarray | None]:
    """(17, 2) keypoints and (17,) scores (None if none were sent) of one stream frame."""
    keypoints = _reshape(message.keypoints, 1, (NUM_JOINTS, 2), "keypoints")[0]
    scores = _reshape(message.scores, 1, (NUM_JOINTS,), "scores")[0] if len(message.scores) else None
    return keypoints, scores


def lift_response(out: SequenceOutput) -> pb.LiftResponse:
    """A lifted sequence as a LiftResponse."""
    return pb.LiftResponse(
        num_frames=len(out.poses_mm),
        poses=out.poses_mm.reshape(-1).tolist(),
        trajectory=[] if out.root_mm is None else out.root_mm.reshape(-1).tolist(),
        visible=out.visible.tolist(),
    )


def session(info: SessionInfo) -> pb.StreamLiftResponse:
    return pb.StreamLiftResponse(
        session=pb.SessionInfo(session_id=info.session_id, last_seq=info.last_seq, window=info.window)
    )


def pose(output: FrameOutput) -> pb.StreamLiftResponse:
    """One frame's (17, 3) pose, pelvis and visible fraction."""
    root = [] if output.root_mm is None else output.root_mm.tolist()
    joints = output.pose_mm.reshape(-1).tolist()
    return pb.StreamLiftResponse(
        pose=pb.Pose(seq=output.seq, joints=joints, root=root, visible=output.visible)
    )


def frame_error(seq: int, error: ServiceError) -> pb.StreamLiftResponse:
    """The in-band answer to a frame the session did not take, located within the frame: the core's
    `frames[0].keypoints[5]` of its batch of one is the frame's `keypoints[5]`."""
    if error.location[:2] == ("frames", 0):
        error = error.relocated(error.location[2:])
    return pb.StreamLiftResponse(
        error=pb.FrameError(
            seq=seq, code=error.grpc_code, message=error.described, location=location_text(error)
        )
    )


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key of an `authorization: Bearer <key>` metadata entry, else None."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
