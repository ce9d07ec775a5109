"""One error contract for both transports: the same bad input gets the same code and the same location over
REST and over gRPC, and the same message where the core made it.

Every row is one defect of an otherwise good request, written once in REST's vocabulary (the one the
locations use, docs/rest.md "Errors") and sent to REST (`/v1/lift`, `/v1/sessions`, `.../frames`) and to gRPC
(`Lift`, `StreamLift`) of one server, REST and gRPC over one core on loopback as `poselift serve` runs them,
sessions in a real redis-server. REST answers the status and body of the row's `ServiceError`;
gRPC its status code with `poselift-error-code` and `poselift-error-location` in the trailing metadata, or,
for a stream's frame, an in-band `FrameError` located within the frame (REST's `frames[i]` of the batch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from service.errors import (
    InvalidInput,
    Location,
    MalformedRequest,
    PayloadTooLarge,
    SeqConflict,
    ServiceError,
    format_location,
)
from service.limits import limits_table
from service.rpc.status import CODE_KEY, LOCATION_KEY
from tests.service.rpc.rpckit import RpcLive
from tests.service.testkit import Clip, RedisServer, make_settings

MAX_FRAMES = 8  # frames per request: small, so the limit is cheap to hit
NAN = float("nan")
LAYOUTS = {"h36m17": pb.LAYOUT_H36M17, "coco17": pb.LAYOUT_COCO17}
MODES = {"causal": pb.MODE_CAUSAL, "offline": pb.MODE_OFFLINE}
UNKNOWN_ENUM = 7  # what a name the proto has no number for is sent as
CAMERA: dict[str, Any] = {"layout": "h36m17", "width": 1920, "height": 1080, "fps": 30.0}
DOCS = Path(__file__).resolve().parents[2] / "docs"

Changes = Callable[[np.ndarray], dict[str, Any]]  # (T, 17, 2) good keypoints -> the fields a row replaces
Batch = Callable[[np.ndarray], list[dict[str, Any]]]  # -> a session batch, [{seq, keypoints, scores?}]


def put(values: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    """A copy of `values` with one element replaced."""
    changed = np.array(values, dtype=np.float64)
    changed[index] = value
    return changed


def batch(seqs: list[int], bad: int | None = None, **changes: Callable[[np.ndarray], Any]) -> Batch:
    """Frames with `seqs` (frame i: keypoints of clip frame i); frame `bad` gets `changes` (field -> value
    made from the frame's good keypoints)."""

    def build(kp: np.ndarray) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = [{"seq": s, "keypoints": kp[i % len(kp)]} for i, s in enumerate(seqs)]
        if bad is not None:
            frames[bad].update({name: make(frames[bad]["keypoints"]) for name, make in changes.items()})
        return frames

    return build


@dataclass(frozen=True)
class Row:
    """One defect. `kind`: lift (`/v1/lift`, `Lift`), open (`POST /v1/sessions`, a stream's `open`),
    frames (a session batch; a stream's frames one by one), malformed (a body that is no JSON / no message).
    `error` None: the request must succeed on both."""

    name: str
    kind: str
    error: type[ServiceError] | None
    location: Location = ()
    changes: Changes = field(default=lambda kp: {})
    frames: Batch | None = None
    before: tuple[int, ...] = ()  # seqs a session takes before the row's batch
    same_message: bool = True  # the core words the error (not a transport's decoding)
    rest_only: bool = False  # the defect has no gRPC form (a stream has no batches)


def ones(kp: np.ndarray) -> np.ndarray:
    return np.ones(kp.shape[:2])


BAD, BIG = InvalidInput, PayloadTooLarge  # 422, 413
ROWS = [
    # --- /v1/lift and Lift: the camera --------------------------------------------------------------
    Row("width over the limit", "lift", BAD, ("width",), lambda kp: {"width": 100_001}),
    Row("height 0", "lift", BAD, ("height",), lambda kp: {"height": 0}),
    Row("fps too high", "lift", BAD, ("fps",), lambda kp: {"fps": 2000.0}),
    Row("fps NaN", "lift", BAD, ("fps",), lambda kp: {"fps": NAN}),
    Row("focal negative", "lift", BAD, ("focal_px",), lambda kp: {"focal_px": -5.0}),
    Row("focal too long", "lift", BAD, ("focal_px",), lambda kp: {"focal_px": 2e6}),
    Row("principal cx NaN", "lift", BAD, ("principal_px", 0), lambda kp: {"principal_px": [NAN, 540.0]}),
    Row("principal cy far out", "lift", BAD, ("principal_px", 1), lambda kp: {"principal_px": [960.0, 2e6]}),
    Row("unknown layout", "lift", BAD, ("layout",), lambda kp: {"layout": "openpose"}, same_message=False),
    Row("unknown mode", "lift", BAD, ("mode",), lambda kp: {"mode": "sideways"}, same_message=False),
    # --- /v1/lift and Lift: the frames ----------------------------------------------------------------
    Row("no frames", "lift", BAD, ("keypoints",), lambda kp: {"keypoints": kp[:0]}),
    Row("too many frames", "lift", BIG, ("keypoints",), lambda kp: {"keypoints": np.tile(kp, (3, 1, 1))}),
    Row("16 joints a frame", "lift", BAD, ("keypoints",), lambda kp: {"keypoints": kp[:, :16]},
        same_message=False),
    Row("NaN keypoint", "lift", BAD, ("keypoints", 2, 5), lambda kp: {"keypoints": put(kp, (2, 5, 0), NAN)}),
    Row("keypoint far out", "lift", BAD, ("keypoints", 1, 3),
        lambda kp: {"keypoints": put(kp, (1, 3, 1), 2e6)}),
    Row("score over 1", "lift", BAD, ("scores", 1, 4), lambda kp: {"scores": put(ones(kp), (1, 4), 1.5)}),
    Row("scores of 2 frames for 3", "lift", BAD, ("scores",), lambda kp: {"scores": ones(kp)[:2]},
        same_message=False),
    Row("NaN on a missing joint is fine", "lift", None, (),
        lambda kp: {"keypoints": put(kp, (1, 6, 0), NAN), "scores": put(ones(kp), (1, 6), 0.0)}),
    # --- opening a session: POST /v1/sessions, a stream's open --------------------------------------
    Row("session fps too high for its history", "open", BAD, ("fps",), lambda kp: {"fps": 1000.0}),
    Row("session width 0", "open", BAD, ("width",), lambda kp: {"width": 0}),
    Row("session unknown layout", "open", BAD, ("layout",), lambda kp: {"layout": "x"}, same_message=False),
    # --- a session's frames: a batch, a stream's frames --------------------------------------------
    Row("NaN keypoint mid-batch", "frames", BAD, ("frames", 1, "keypoints", 5),
        frames=batch([0, 1, 2], 1, keypoints=lambda k: put(k, (5, 0), NAN))),
    Row("16 joints mid-batch", "frames", BAD, ("frames", 1, "keypoints"),
        frames=batch([0, 1, 2], 1, keypoints=lambda k: k[:16]), same_message=False),
    Row("score below 0 mid-batch", "frames", BAD, ("frames", 1, "scores", 4),
        frames=batch([0, 1, 2], 1, scores=lambda k: put(np.ones(17), (4,), -0.5))),
    Row("seq over 2^63-1 mid-batch", "frames", BAD, ("frames", 1, "seq"), frames=batch([0, 2**63, 2])),
    Row("seq older than the poses held", "frames", SeqConflict, ("frames", 0, "seq"),
        frames=batch([3, 6]), before=(5,)),
    Row("empty batch", "frames", BAD, ("frames",), frames=batch([]), rest_only=True),
    Row("seq decreasing in a batch", "frames", BAD, ("frames", 2, "seq"), frames=batch([0, 2, 1]),
        rest_only=True),
    Row("batch over the frame limit", "frames", BIG, ("frames",), frames=batch(list(range(MAX_FRAMES + 1))),
        rest_only=True),
    # --- no JSON, no message ------------------------------------------------------------------------
    Row("undecodable body", "malformed", MalformedRequest, (), same_message=False),
]  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What one transport answered: its status (HTTP number or gRPC code name), the service's error code
    (None for success; "" where the transport carries none), the location and the message without it."""

    status: int | str
    code: str | None
    location: Location = ()
    message: str = ""


def plain(text: str, location: Location) -> str:
    """The message without its location prefix, which must be there (so a person reads where, too)."""
    prefix = f"{format_location(location)}: " if location else ""
    assert text.startswith(prefix), (text, location)
    return text[len(prefix) :]


# --- the two transports --------------------------------------------------------------------------------


def rest_request(row: Row, kp: np.ndarray) -> dict[str, Any]:
    return {**CAMERA, "keypoints": kp, **row.changes(kp)}


def as_json(value: Any) -> bytes:
    """JSON with NaN written as NaN (as Python clients and json.dumps do; httpx refuses to)."""

    def plain_values(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, dict):
            return {k: plain_values(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain_values(x) for x in v]
        return v

    return json.dumps(plain_values(value)).encode()


def rest_outcome(response: httpx.Response) -> Outcome:
    if response.status_code < 400:
        return Outcome(response.status_code, None)
    error = response.json()["error"]
    location = tuple(error.get("location") or ())
    return Outcome(response.status_code, error["code"], location, plain(error["message"], location))


def over_rest(client: httpx.Client, row: Row, kp: np.ndarray) -> Outcome:
    def post(path: str, body: Any) -> httpx.Response:
        return client.post(path, content=as_json(body), headers={"content-type": "application/json"})

    if row.kind == "malformed":
        truncated = client.post(
            "/v1/lift", content=b'{"width": 640,', headers={"content-type": "application/json"}
        )
        return rest_outcome(truncated)
    if row.kind == "lift":
        return rest_outcome(post("/v1/lift", rest_request(row, kp)))
    opened = post("/v1/sessions", {**CAMERA, **(row.changes(kp) if row.kind == "open" else {})})
    if row.kind == "open" or opened.status_code != 201:
        return rest_outcome(opened)
    url = f"/v1/sessions/{opened.json()['session_id']}/frames"
    for seq in row.before:
        assert post(url, {"frames": [{"seq": seq, "keypoints": kp[0]}]}).status_code == 200
    assert row.frames is not None
    return rest_outcome(post(url, {"frames": row.frames(kp)}))


def pb_camera(request: dict[str, Any]) -> pb.Camera:
    cx, cy = request.get("principal_px") or (0.0, 0.0)
    return pb.Camera(
        width=request["width"],
        height=request["height"],
        fps=request["fps"],
        layout=LAYOUTS.get(request["layout"], UNKNOWN_ENUM),
        focal_px=request.get("focal_px") or 0.0,
        cx=cx,
        cy=cy,
    )


def pb_lift(request: dict[str, Any]) -> pb.LiftRequest:
    kp = np.asarray(request["keypoints"], np.float64)
    scores = request.get("scores")
    return pb.LiftRequest(
        camera=pb_camera(request),
        num_frames=len(kp),
        keypoints=kp.reshape(-1).tolist(),
        scores=[] if scores is None else np.asarray(scores, np.float64).reshape(-1).tolist(),
        mode=MODES.get(request.get("mode", "causal"), UNKNOWN_ENUM),
    )


def pb_frame(frame: dict[str, Any]) -> pb.StreamLiftRequest:
    scores = frame.get("scores")
    return pb.StreamLiftRequest(
        frame=pb.Frame(
            seq=frame["seq"],
            keypoints=np.asarray(frame["keypoints"], np.float64).reshape(-1).tolist(),
            scores=[] if scores is None else np.asarray(scores, np.float64).reshape(-1).tolist(),
        )
    )


def status_outcome(error: grpc.RpcError) -> Outcome:
    assert isinstance(error, grpc.Call)
    metadata = {entry.key: entry.value for entry in error.trailing_metadata() or ()}
    location = tuple(json.loads(metadata[LOCATION_KEY])) if LOCATION_KEY in metadata else ()
    return Outcome(error.code().name, metadata.get(CODE_KEY, ""), location, plain(error.details(), location))


def over_grpc(channel: grpc.Channel, row: Row, kp: np.ndarray) -> Outcome:
    stub = pb_grpc.PoseLifterStub(channel)
    try:
        if row.kind == "malformed":
            channel.unary_unary("/poselift.v1.PoseLifter/Lift")(b"\xff\xff\xff\xff", timeout=30)
        elif row.kind == "lift":
            stub.Lift(pb_lift(rest_request(row, kp)), timeout=30)
        elif row.kind == "open":
            opening = pb.StreamLiftRequest(open=pb_camera({**CAMERA, **row.changes(kp)}))
            list(stub.StreamLift(iter([opening]), timeout=30))
        else:
            assert row.frames is not None
            return frames_outcome(stub, row, kp)
    except grpc.RpcError as error:
        return status_outcome(error)
    return Outcome("OK", None)


def frames_outcome(stub: pb_grpc.PoseLifterStub, row: Row, kp: np.ndarray) -> Outcome:
    """The batch's frames one by one on a stream: each gets its reply, the bad one an in-band FrameError,
    located within the frame; here at `frames[i]` of the batch, as REST locates it."""
    assert row.frames is not None
    frames = row.frames(kp)
    before = [pb_frame({"seq": seq, "keypoints": kp[0]}) for seq in row.before]
    opening = pb.StreamLiftRequest(open=pb_camera(CAMERA))
    replies = list(stub.StreamLift(iter([opening, *before, *map(pb_frame, frames)]), timeout=30))
    assert len(replies) == 1 + len(before) + len(frames), replies
    assert all(reply.WhichOneof("msg") == "pose" for reply in replies[1 : 1 + len(before)])
    errors = [
        (index, reply.error)
        for index, reply in enumerate(replies[1 + len(before) :])
        if reply.WhichOneof("msg") == "error"
    ]
    if not errors:
        return Outcome("OK", None)
    assert len(errors) == 1, errors  # the other frames are taken
    index, error = errors[0]
    assert error.seq == frames[index]["seq"], error
    within = tuple(json.loads(error.location)) if error.location else ()
    return Outcome(error.code, "", ("frames", index, *within), plain(error.message, within))


# --- the table -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(lifter: Lifter, redis_server: RedisServer) -> Iterator[RpcLive]:
    """REST and gRPC over one core (as `poselift serve`), sessions in the suite's redis-server."""
    settings = make_settings(redis_url=redis_server.url, max_frames_per_request=MAX_FRAMES)
    with RpcLive(settings, lifter) as live:
        yield live


@pytest.fixture(scope="module")
def rest(server: RpcLive) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: RpcLive) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_error_contract_same_code_and_location(
    row: Row, rest: httpx.Client, channel: grpc.Channel, clip: Clip
) -> None:
    kp = np.asarray(clip.keypoints_px[:3], np.float32).astype(np.float64)  # what both carry alike
    by_rest = over_rest(rest, row, kp)
    if row.error is None:
        assert by_rest.code is None, by_rest
    else:
        assert (by_rest.status, by_rest.code) == (row.error.http_status, row.error.code), by_rest
        assert by_rest.location == row.location, by_rest
    if row.rest_only:
        return
    by_grpc = over_grpc(channel, row, kp)
    if row.error is None:
        assert by_grpc.code is None, by_grpc
        return
    assert by_grpc.status == row.error.grpc_code, by_grpc
    assert by_grpc.code in (row.error.code, ""), by_grpc  # "" in-band: a FrameError carries no REST code
    assert by_grpc.code or row.kind == "frames", by_grpc
    assert by_grpc.location == row.location, by_grpc
    if row.same_message:
        assert by_grpc.message == by_rest.message


def test_error_contract_table_rows_cover_both_transports() -> None:
    both = [row for row in ROWS if not row.rest_only and row.error is not None]
    assert len(both) >= 12
    assert {row.kind for row in both} == {"lift", "open", "frames", "malformed"}


def test_error_contract_limits_table_is_documented() -> None:
    """docs/rest.md holds the limits table as `service.limits` renders it (`python -m service.limits`)."""
    assert limits_table() in (DOCS / "rest.md").read_text(), (
        "paste `python -m service.limits` into docs/rest.md"
    )
