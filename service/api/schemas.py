"""Request and response bodies of the REST API, named by role; the OpenAPI docs are generated from them.

The models parse types only (a number where a number belongs, a layout by name). Every limit, shapes
((T, 17, 2) keypoints, (T, 17) scores) and ranges alike, is the core's (`service.limits`), so REST refuses
exactly what gRPC refuses, with the same message and location; the schema documents the same numbers
(`minimum`, `maxItems`, ...) from there, so the OpenAPI description still says what is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from poselift.skeleton import H36M17_JOINTS, NUM_JOINTS
from service.limits import (
    MAX_FOCAL_PX,
    MAX_FPS,
    MAX_IMAGE_PX,
    MAX_KEYPOINT_PX,
    MAX_PRINCIPAL_PX,
    MAX_SEQ,
)
from service.sessions import DEFAULT_FPS, Camera


def _items(count: int, description: str) -> Any:
    """A list's documented length, `count` items, checked by the core, not here."""
    return Field(json_schema_extra={"minItems": count, "maxItems": count}, description=description)


def _range(description: str, **limits: float) -> Any:
    """A number's documented range (JSON Schema keywords), checked by the core, not here."""
    return Field(json_schema_extra=dict(limits), description=description)


Layout = Literal["h36m17", "coco17"]
Point2 = Annotated[
    list[float],
    _items(2, f"(x, y) pixels, within ±{MAX_KEYPOINT_PX:,} (anything where the joint's score is 0)"),
]
Joints2 = Annotated[list[Point2], _items(NUM_JOINTS, "17 joints")]
Score = Annotated[float, _range("confidence; 0: a missing joint", minimum=0.0, maximum=1.0)]
Scores = Annotated[list[Score], _items(NUM_JOINTS, "17 confidences in [0, 1]")]
Point3 = Annotated[list[float], Field(min_length=3, max_length=3, description="(x, y, z) mm")]
Pose3 = Annotated[list[Point3], Field(min_length=NUM_JOINTS, max_length=NUM_JOINTS)]
Pixels = Annotated[int, _range("image size in pixels", minimum=1, maximum=MAX_IMAGE_PX)]
Fps = Annotated[float, _range("the video's frame rate", exclusiveMinimum=0.0, maximum=MAX_FPS)]
Seq = Annotated[int, _range("frame number, increasing; gaps allowed", minimum=0, maximum=MAX_SEQ)]

# A person seen by a 1920x1080 camera 4 m away (h36m17 order), two frames of the validation set.
_EXAMPLE_FRAMES: list[list[list[float]]] = [
    [[959.6, 538.2], [938.3, 538.3], [925.3, 623.7], [933.9, 613.1], [981.0, 538.1], [969.0, 625.5],
     [954.8, 700.5], [961.9, 482.3], [972.2, 415.3], [979.7, 375.3], [978.8, 354.1], [998.9, 430.1],
     [1000.2, 499.0], [989.8, 475.6], [941.8, 421.8], [920.3, 477.7], [919.3, 514.5]],
    [[960.4, 541.8], [938.4, 542.3], [924.3, 623.4], [931.7, 632.0], [982.3, 541.4], [969.2, 632.8],
     [952.5, 697.4], [962.0, 484.5], [972.8, 415.5], [980.8, 374.2], [980.8, 352.3], [1000.5, 431.3],
     [1002.1, 504.0], [988.7, 471.6], [941.9, 421.8], [922.0, 477.1], [913.9, 516.7]],
]  # fmt: skip
_CAMERA_EXAMPLE: dict[str, Any] = {"layout": "h36m17", "width": 1920, "height": 1080, "fps": 30.0}


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class CameraBody(BaseModel):
    """The video the keypoints come from."""

    model_config = _examples(_CAMERA_EXAMPLE)

    layout: Layout = Field("h36m17", description="joint order of the keypoints")
    width: Pixels
    height: Pixels
    fps: Fps = DEFAULT_FPS
    focal_px: float | None = Field(
        None,
        json_schema_extra={"exclusiveMinimum": 0.0, "maximum": MAX_FOCAL_PX},
        description="the camera's focal length in pixels; default: a 65° field of view across the longer "
        "image side. It only scales the pelvis depth of `trajectory`/`root`",
    )
    principal_px: (
        Annotated[
            list[Annotated[float, _range("pixels", minimum=-MAX_PRINCIPAL_PX, maximum=MAX_PRINCIPAL_PX)]],
            _items(2, "(cx, cy) pixels"),
        ]
        | None
    ) = Field(None, description="the principal point (cx, cy) px; default: the centre")

    def camera(self) -> Camera:
        """The core's view of this body's camera fields (which the core checks, the principal point's
        length included)."""
        principal = None if self.principal_px is None else cast(tuple[float, float], tuple(self.principal_px))
        return Camera(self.layout, self.width, self.height, self.fps, self.focal_px, principal)


class LiftRequest(CameraBody):
    """A whole sequence of 2D keypoints to lift at once."""

    model_config = _examples({**_CAMERA_EXAMPLE, "keypoints": _EXAMPLE_FRAMES})

    keypoints: list[Joints2] = Field(
        json_schema_extra={"minItems": 1}, description="(T, 17, 2) pixels, origin top-left, y down"
    )
    scores: list[Scores] | None = Field(None, description="(T, 17) confidences; 0 = missing joint")
    mode: Literal["causal", "offline"] = Field(
        "causal",
        description="causal: pose t uses frames <= t only, exactly what a session returns; offline: each "
        "pose also sees the frames after it (more accurate and smoother, for recorded clips)",
    )


class LiftResponse(BaseModel):
    """3D poses, one per input frame: camera frame (x right, y down, z forward), mm, pelvis at the origin."""

    joints: list[str] = Field(default=list(H36M17_JOINTS), description="the 17 joint names, in order")
    units: Literal["mm"] = "mm"
    poses: list[Pose3] = Field(description="(T, 17, 3) mm")
    trajectory: list[Point3] | None = Field(
        None,
        description="(T, 3) mm: the pelvis in the camera frame (x right, y down, z forward); null for models "
        "without a root head",
    )
    visible: list[float] = Field(
        default_factory=list, description="(T,) the fraction of each pose's input window that was seen (0-1)"
    )


class SessionCreate(CameraBody):
    """Open a session: one camera's view of one person."""


class SessionCreated(BaseModel):
    """A new session; send its frames to /v1/sessions/{session_id}/frames."""

    session_id: str
    expires_in_s: float = Field(description="the session expires this long after its last write")
    window: int = Field(description="frames of history each pose uses (the current one included)")


class FrameIn(BaseModel):
    """One video frame's keypoints."""

    seq: Seq
    keypoints: Joints2
    scores: Scores | None = None


class FramesRequest(BaseModel):
    """A batch of a session's frames, in strictly increasing seq."""

    model_config = _examples(
        {"frames": [{"seq": i, "keypoints": frame} for i, frame in enumerate(_EXAMPLE_FRAMES)]}
    )

    frames: list[FrameIn] = Field(json_schema_extra={"minItems": 1})


class PoseOut(BaseModel):
    """The 3D pose of one frame."""

    seq: int
    joints: Pose3 = Field(description="(17, 3) mm, h36m17 order")
    root: Point3 | None = Field(
        None, description="(3,) mm: the pelvis in the camera frame; null without a root head"
    )
    visible: float = Field(1.0, description="the fraction of this pose's input window that was seen (0-1)")


class FramesResponse(BaseModel):
    """One pose per frame sent, in the same order (a resent frame gets its stored pose)."""

    poses: list[PoseOut]


class SessionStatus(BaseModel):
    """Where a session stands."""

    session_id: str
    last_seq: int = Field(description="-1 before the first frame")
    frames_seen: int
    expires_in_s: float
    window: int
    layout: Layout
    width: float
    height: float
    fps: float


class ModelInfo(BaseModel):
    """The loaded model."""

    joints: list[str]
    window: int
    checkpoint_id: str = Field(description="content hash of the weights")
    kind: str
    config: dict[str, Any]
    device: str
    backend: str = Field(description="how the network runs: onnx, torchscript or torch")
    units: Literal["mm"] = "mm"
    training_data: dict[str, Any] | None = None
    validation: dict[str, Any] | None = Field(None, description="accuracy measured on the validation split")


class Status(BaseModel):
    """Liveness / readiness."""

    status: str
    store: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_input, seq_conflict")
    message: str = Field(description="what is wrong, for people, prefixed with its location if it has one")
    location: list[str | int] | None = Field(
        None,
        description="the path of the offending part of the request body, field names and list indices, "
        'e.g. ["frames", 3, "keypoints", 5]; the same in gRPC\'s poselift-error-location. Absent: none',
    )


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error body for these statuses."""
    text = {
        400: "Malformed request",
        401: "Missing or unknown API key",
        404: "No such session (expired, closed, or another key's)",
        409: "Seq conflict, writers racing, or a session of another model",
        413: "Body or frame count over the limit",
        422: "Invalid input",
        429: "Too many sessions",
        503: "Session store or model unavailable",
    }
    return {status: {"model": ErrorBody, "description": text.get(status, "Error")} for status in statuses}
