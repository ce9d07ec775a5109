"""`/v1/lift`'s fast JSON path (`service.api.fastjson`) answers exactly what FastAPI's own path answers.

The request side is checked differentially: one app, one body model, two routes, one with FastAPI's body
handling and one with `ModelBodyRoute`; every body (odd ones written out, and generated ones) must get the
same status and the same bytes from both, the same error code, location and message for a refused one. The
response side: numpy arrays written by orjson read back as the very float32 values, in LiftResponse's shape.
The core's whole-clip numpy work gives the same poses in a worker thread as on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import APIRouter, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from starlette.responses import Response

import service.lifting
from poselift import Lifter
from poselift.skeleton import H36M17_JOINTS
from service.api import create_app, fastjson
from service.api.fastjson import FAST_BODY_BYTES, SLICE_FRAMES, dumps_json, render_sliced
from service.api.handlers import install_error_handlers
from service.api.routes.lift import LiftRoute
from service.api.schemas import LiftRequest, LiftResponse
from service.errors import InvalidInput
from service.lifting import serving_core
from service.sessions import Camera
from tests.service.testkit import Clip, LiveServer, make_settings

GOOD: dict[str, Any] = {
    "layout": "h36m17",
    "width": 1920,
    "height": 1080,
    "fps": 30.0,
    "keypoints": [[[960.5, 540.25]] * 17] * 2,
    "scores": [[1.0] * 17] * 2,
}
JSON = {"content-type": "application/json"}


def _parsed(body: LiftRequest) -> Response:
    """What a route made of its body: every field (a big body's arrays, float64, as lists), and which were
    given, as JSON (NaN as null)."""
    fields = {name: getattr(body, name) for name in LiftRequest.model_fields}
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float64, name
            fields[name] = value.tolist()
    parsed = {"fields": fields, "given": sorted(body.model_fields_set)}
    return Response(TypeAdapter(Any).dump_json(parsed), media_type="application/json")


def _app() -> FastAPI:
    app = FastAPI()
    plain, fast = APIRouter(prefix="/plain"), APIRouter(prefix="/fast", route_class=LiftRoute)
    for router in (plain, fast):

        @router.post("/lift")
        async def lift(body: LiftRequest) -> Response:
            return _parsed(body)

        app.include_router(router)
    install_error_handlers(app)
    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return _app()


def _both(app: FastAPI, content: bytes, headers: dict[str, str] | None) -> None:
    """`content` posted to both routes gets the same status and the same bytes."""

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            plain = await client.post("/plain/lift", content=content, headers=headers)
            fast = await client.post("/fast/lift", content=content, headers=headers)
        return plain, fast

    plain, fast = asyncio.run(main())
    assert (fast.status_code, fast.content) == (plain.status_code, plain.content), content[:200]
    assert gc.isenabled()  # the fast parse of a big body gives the collector back


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python clients send them


ODD_BODIES: list[tuple[str, bytes, dict[str, str] | None]] = [
    ("good", _dumps(GOOD), JSON),
    ("good, charset", _dumps(GOOD), {"content-type": "application/json; charset=utf-8"}),
    ("good, +json", _dumps(GOOD), {"content-type": "application/vnd.poselift+json"}),
    ("no content type", _dumps(GOOD), {}),
    ("text/plain", _dumps(GOOD), {"content-type": "text/plain"}),
    ("empty", b"", JSON),
    ("truncated", b'{"width": 640,', JSON),
    ("trailing data", _dumps(GOOD) + b" x", JSON),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + _dumps(GOOD), JSON),
    ("UTF-16", json.dumps(GOOD).encode("utf-16"), JSON),
    ("not UTF-8", _dumps({**GOOD, "layout": "\udcff"}).replace(b"\\udcff", b"\xff"), JSON),
    ("lone surrogate", _dumps({**GOOD, "layout": "\ud800"}), JSON),
    ("array", b"[1, 2]", JSON),
    ("null", b"null", JSON),
    ("NaN and infinities", _dumps({**GOOD, "fps": math.nan, "focal_px": math.inf}), JSON),
    ("NaN keypoint", _dumps({**GOOD, "keypoints": [[[math.nan, -math.inf]] * 17] * 2}), JSON),
    ("huge numbers", b'{"width": 1e400, "height": 123456789012345678901234567890, "keypoints": []}', JSON),
    ("strings for numbers", _dumps({**GOOD, "width": "12", "fps": "3.5", "keypoints": [[["1", "2"]]]}), JSON),
    ("booleans for numbers", _dumps({**GOOD, "width": True, "fps": False, "keypoints": [[[True, 1]]]}), JSON),
    ("fraction for an integer", _dumps({**GOOD, "height": 1.5}), JSON),
    ("keypoints an object", _dumps({**GOOD, "keypoints": {"a": 1}}), JSON),
    ("keypoint null", _dumps({**GOOD, "keypoints": [[[1.0, None]] * 17]}), JSON),
    ("ragged keypoints", _dumps({**GOOD, "keypoints": [[[1.0, 2.0, 3.0], [1.0]]]}), JSON),
    ("unknown layout and mode", _dumps({**GOOD, "layout": "openpose", "mode": 3}), JSON),
    ("scores wrong", _dumps({**GOOD, "scores": [[0.5, "a"], None]}), JSON),
    ("missing fields", b"{}", JSON),
    ("duplicate keys", b'{"width": 1, "height": 2, "keypoints": [], "width": 3}', JSON),
    ("extra fields", _dumps({**GOOD, "extra": [1, {"a": None}]}), JSON),
    ("many errors", _dumps({"width": "x", "height": "y", "fps": "z", "keypoints": [[["a"] * 3] * 4]}), JSON),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "headers"), ODD_BODIES, ids=[b[0] for b in ODD_BODIES])
def test_fast_body_parse_answers_as_fastapi_does(
    app: FastAPI, name: str, content: bytes, headers: dict[str, str] | None
) -> None:
    _both(app, content, headers)


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8)
_fields = st.sampled_from([*GOOD, "focal_px", "principal_px", "mode"])


@given(
    changes=st.dictionaries(_fields, _json_values, max_size=3),
    frame=_json_values,
    add_frame=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fast_body_parse_answers_as_fastapi_does_for_generated_bodies(
    app: FastAPI, changes: dict[str, Any], frame: Any, add_frame: bool
) -> None:
    """A good body with some fields replaced by any JSON, and perhaps any JSON as its first frame."""
    body = {**GOOD, **changes}
    if add_frame:
        body["keypoints"] = [frame, *GOOD["keypoints"]]
    _both(app, _dumps(body), JSON)


# Big bodies (over FAST_BODY_BYTES, several SLICE_FRAMES slices): their keypoints and scores are read in
# slices when they are plainly good, and anything else is left to the exact path; both must answer as FastAPI
# does.
_BIG_FRAMES = 2 * SLICE_FRAMES + 37
_rng = np.random.default_rng(7)
BIG: dict[str, Any] = {
    **GOOD,
    "keypoints": (_rng.uniform(-100, 2000, size=(_BIG_FRAMES, 17, 2))).tolist(),
    "scores": _rng.uniform(size=(_BIG_FRAMES, 17)).tolist(),
}
BIG["keypoints"][3] = [[1, 2]] * 17  # ints
BIG["keypoints"][4] = [[-0.0, 5e-324], [1e300, -1e-300], *[[123456789.123456789, 0.1]] * 15]
_LAST = _BIG_FRAMES - 1


def _big(**changes: Any) -> dict[str, Any]:
    return {**BIG, **changes}


def _frame(at: int, frame: Any, name: str = "keypoints") -> list[Any]:
    rows = list(BIG[name])
    rows[at] = frame
    return rows


def _point(at: int, point: Any) -> list[Any]:
    return _frame(at, [point, *BIG["keypoints"][at][1:]])


_OVERFLOWING = _dumps(_big(keypoints=_point(1, [7.0, 2.0]))).replace(b"[7.0, 2.0]", b"[1e400, 2]")
assert b"1e400" in _OVERFLOWING

BIG_BODIES: list[tuple[str, bytes, dict[str, str] | None]] = [
    ("big", _dumps(BIG), JSON),
    ("big, no scores", _dumps({k: v for k, v in BIG.items() if k != "scores"}), JSON),
    ("big, scores null", _dumps(_big(scores=None)), JSON),
    ("big, keypoints null", _dumps(_big(keypoints=None)), JSON),
    ("big, no keypoints", _dumps({k: v for k, v in BIG.items() if k != "keypoints"}), JSON),
    ("big, ints only", _dumps(_big(keypoints=[[[1, 2]] * 17] * _BIG_FRAMES, scores=None)), JSON),
    ("big, every option", _dumps(_big(focal_px=1500.5, principal_px=[960, 540.5], mode="offline")), JSON),
    ("big, compact", json.dumps(BIG, separators=(",", ":")).encode(), JSON),
    ("big, bool keypoint", _dumps(_big(keypoints=_point(_LAST, [True, 2.0]))), JSON),
    ("big, bool elsewhere", _dumps(_big(extra=[True, False])), JSON),
    ("big, string keypoint", _dumps(_big(keypoints=_point(300, ["1.5", 2.0]))), JSON),
    ("big, null keypoint", _dumps(_big(keypoints=_point(300, [None, 2.0]))), JSON),
    ("big, NaN keypoint", _dumps(_big(keypoints=_point(300, [math.nan, 2.0]))), JSON),
    ("big, infinite keypoint", _dumps(_big(keypoints=_point(_LAST, [1.0, -math.inf]))), JSON),
    ("big, overflowing keypoint", _OVERFLOWING, JSON),
    ("big, huge int keypoint", _dumps(_big(keypoints=_point(1, [2**64 + 1, 2]))), JSON),
    ("big, int64 keypoint", _dumps(_big(keypoints=_point(1, [2**63 - 1, -(2**63)]))), JSON),
    ("big, ragged point", _dumps(_big(keypoints=_point(300, [1.0, 2.0, 3.0]))), JSON),
    ("big, short frame", _dumps(_big(keypoints=_frame(300, [[1.0, 2.0]] * 16))), JSON),
    ("big, nested too deep", _dumps(_big(keypoints=_point(300, [[1.0], [2.0]]))), JSON),
    ("big, frame an object", _dumps(_big(keypoints=_frame(0, {"a": 1}))), JSON),
    ("big, every point 3 long", _dumps(_big(keypoints=[[[1.0, 2.0, 3.0]] * 17] * _BIG_FRAMES)), JSON),
    ("big, flat keypoints", _dumps(_big(keypoints=[1.0] * 30000)), JSON),
    ("big, empty keypoints", _dumps(_big(keypoints=[], extra=[0.5] * 20000)), JSON),
    ("big, scores too short", _dumps(_big(scores=BIG["scores"][:-1])), JSON),
    ("big, scores too long", _dumps(_big(scores=[*BIG["scores"], BIG["scores"][0]])), JSON),
    ("big, scores 18 long", _dumps(_big(scores=[[0.5] * 18] * _BIG_FRAMES)), JSON),
    ("big, score out of range", _dumps(_big(scores=_frame(9, [2.0] * 17, "scores"))), JSON),
    ("big, keypoint out of range", _dumps(_big(keypoints=_point(9, [1e9, 2.0]))), JSON),
    ("big, scores a string", _dumps(_big(scores="x" * 100)), JSON),
    ("big, bad width", _dumps(_big(width="x")), JSON),
    ("big, bad layout and mode", _dumps(_big(layout="openpose", mode=3)), JSON),
    ("big, extra nesting", _dumps(_big(extra=json.loads("[" * 300 + "]" * 300))), JSON),
    ("big, duplicate keypoints, first bad", b'{"keypoints": [["x"]], ' + _dumps(BIG)[1:], JSON),
    ("big, duplicate keypoints, last bad", _dumps(BIG)[:-1] + b', "keypoints": [["x"]]}', JSON),
    ("big, duplicate width", _dumps(BIG)[:-1] + b', "width": 640}', JSON),
    ("big, array", _dumps(list(BIG.values())), JSON),
    ("big, trailing data", _dumps(BIG) + b" x", JSON),
    ("big, UTF-8 BOM", b"\xef\xbb\xbf" + _dumps(BIG), JSON),
    ("big, text/plain", _dumps(BIG), {"content-type": "text/plain"}),
    ("big, lone surrogate", _dumps(_big(layout="\ud800")), JSON),
    # bodies that the split by text (fastjson._split_arrays) must not misread
    ("big, indented", json.dumps(BIG, indent=1).encode(), JSON),
    ("big, nested keypoints first", _dumps({"extra": {"keypoints": [[[1, 2]] * 17]}, **BIG}), JSON),
    ("big, nested bad keypoints first", _dumps({"extra": {"keypoints": [[["x", 2]]]}, **BIG}), JSON),
    ("big, marker in a string", _dumps(_big(layout='"\u0000poselift-array-0"')), JSON),
    ("big, marker as keypoints", _dumps(_big(keypoints="\u0000poselift-array-0")), JSON),
    ("big, frame nested deeper", _dumps(_big(keypoints=_frame(300, [[[1.0, 2.0]]] * 17))), JSON),
    ("big, frame of frames", _dumps(_big(keypoints=_frame(300, [BIG["keypoints"][0]] * 17))), JSON),
    ("big, keypoints key in a string", _dumps(_big(layout='"keypoints": [[[1, 2]]]')), JSON),
    ("big, keypoints a string first", _dumps({"note": "keypoints", **BIG}), JSON),
]  # fmt: skip


def test_big_bodies_are_big() -> None:
    assert all(len(content) > FAST_BODY_BYTES for _, content, _ in BIG_BODIES)
    assert len(_dumps(BIG)) > 3 * fastjson.PIECE_BYTES  # their arrays are cut in several pieces


@pytest.mark.parametrize(("name", "content", "headers"), BIG_BODIES, ids=[b[0] for b in BIG_BODIES])
def test_fast_body_parse_of_big_bodies_answers_as_fastapi_does(
    app: FastAPI, name: str, content: bytes, headers: dict[str, str] | None
) -> None:
    _both(app, content, headers)


@given(
    changes=st.dictionaries(_fields, _json_values, max_size=2),
    frame=_json_values,
    at=st.integers(0, _BIG_FRAMES - 1),
    field=st.sampled_from(["keypoints", "scores"]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fast_body_parse_answers_as_fastapi_does_for_generated_big_bodies(
    app: FastAPI, changes: dict[str, Any], frame: Any, at: int, field: str
) -> None:
    """A big good body with some fields replaced by any JSON, and one frame of its keypoints or scores."""
    body = {**BIG, **changes, field: _frame(at, frame, field)}
    _both(app, _dumps(body), JSON)


FAST_READ = {
    "big", "big, no scores", "big, scores null", "big, ints only", "big, every option", "big, compact",
    "big, int64 keypoint", "big, huge int keypoint", "big, score out of range", "big, keypoint out of range",
    "big, duplicate width", "big, duplicate keypoints, first bad", "big, text/plain", "big, indented",
    "big, nested keypoints first", "big, nested bad keypoints first", "big, keypoints a string first",
}  # fmt: skip


@pytest.mark.parametrize(("name", "content"), [b[:2] for b in BIG_BODIES], ids=[b[0] for b in BIG_BODIES])
def test_only_plainly_good_big_bodies_are_read_in_slices(name: str, content: bytes) -> None:
    """The differential tests above cover both paths: a plainly good big body's arrays are read in slices,
    anything else is left to the exact path."""
    parsed = asyncio.run(fastjson._parse_in_slices(LiftRequest, content, LiftRoute.arrays))
    assert (parsed is not None) == (name in FAST_READ)
    if parsed is not None:
        assert isinstance(parsed.keypoints, np.ndarray)
        assert parsed.keypoints.shape == (len(json.loads(content)["keypoints"]), 17, 2)
    assert gc.isenabled()


WHOLE = {"big, indented", "big, nested keypoints first", "big, nested bad keypoints first"}
SPLIT = FAST_READ - WHOLE - {"big, duplicate keypoints, first bad"}


@pytest.mark.parametrize(("name", "content"), [b[:2] for b in BIG_BODIES], ids=[b[0] for b in BIG_BODIES])
def test_plain_big_bodies_are_split_by_text_before_parsing(name: str, content: bytes) -> None:
    """As Python's json and compact writers write them, a good body's arrays are parsed a piece at a time,
    never the body whole in one call (that holds the loop ~10 ms for 4096 frames); other bodies may be,
    and must read the same either way."""
    if b"true" in content or b"false" in content:
        pytest.skip("a body with booleans is parsed whole (they may stand for numbers)")
    parsed = asyncio.run(fastjson._parse_split(LiftRequest, content, LiftRoute.arrays))
    assert (parsed is not None) == (name in SPLIT), name
    if parsed is not None:
        whole = asyncio.run(fastjson._parse(LiftRequest, content, LiftRoute.arrays))
        assert whole is not None
        for field in LiftRequest.model_fields:
            assert np.array_equal(getattr(parsed, field), getattr(whole, field)), field
        assert parsed.model_fields_set == whole.model_fields_set


def test_pauses_between_slices_read_and_write_the_same() -> None:
    """While live streams are open the slices leave the loop free for a while (`bulk_pause_s`): the same
    body reads as the same model, and the same answer writes as the same bytes."""
    content = _dumps(BIG)
    quick = asyncio.run(fastjson._parse_in_slices(LiftRequest, content, LiftRoute.arrays))
    paused = asyncio.run(fastjson._parse_in_slices(LiftRequest, content, LiftRoute.arrays, pause_s=0.001))
    assert quick is not None and paused is not None
    for field in LiftRequest.model_fields:
        assert np.array_equal(getattr(quick, field), getattr(paused, field)), field
    poses = np.random.default_rng(3).normal(0, 500, (3 * SLICE_FRAMES + 5, 17, 3)).astype(np.float32)
    answer = {"poses": poses, "visible": poses[:, 0, 0]}
    assert asyncio.run(render_sliced(answer, pause_s=0.001)) == dumps_json(answer)


@pytest.mark.parametrize("frames", [1, SLICE_FRAMES, SLICE_FRAMES + 1, 3 * SLICE_FRAMES + 5])
def test_sliced_json_is_the_same_bytes(frames: int) -> None:
    rng = np.random.default_rng(frames)
    poses = (rng.normal(size=(frames, 17, 3)) * 1000).astype(np.float32)
    poses[frames // 2, 2, 0] = np.nan
    root = np.asfortranarray(rng.normal(size=(frames, 3)).astype(np.float32) * 4000)  # not C-contiguous
    visible = rng.uniform(size=frames).astype(np.float32)
    for trajectory in (root, None):
        content = {
            "joints": ["a", "b"],
            "units": "mm",
            "poses": poses,
            "trajectory": trajectory,
            "visible": visible,
        }
        assert asyncio.run(render_sliced(content)) == dumps_json(content)


def test_numpy_json_reads_back_as_the_same_float32_values() -> None:
    rng = np.random.default_rng(0)
    poses = (rng.normal(size=(5, 17, 3)) * 1000).astype(np.float32)
    poses[1, 2, 0] = np.nan
    root = np.asfortranarray(rng.normal(size=(5, 3)).astype(np.float32) * 4000)  # not C-contiguous
    visible = rng.uniform(size=5).astype(np.float32)
    content = {"poses": poses, "trajectory": root, "visible": visible, "none": None}
    answer = json.loads(bytes(dumps_json(content)))
    assert answer["poses"][1][2][0] is None  # NaN: null, as pydantic writes it
    for name in ("poses", "trajectory", "visible"):
        got = np.asarray(answer[name], dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(got, content[name])
    as_pydantic = json.loads(TypeAdapter(Any).dump_json(poses.tolist()))  # what LiftResponse wrote
    assert as_pydantic[1][2][0] is None


def test_lift_answers_in_lift_responses_shape(lifter: Lifter, clip: Clip) -> None:
    with LiveServer(create_app(make_settings(), lifter)) as live:
        body = {**clip.camera(), "keypoints": clip.keypoints_px.tolist()}
        response = httpx.post(f"{live.url}/v1/lift", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert list(answer) == list(LiftResponse.model_fields)
    parsed = LiftResponse.model_validate(answer)
    assert parsed.joints == list(H36M17_JOINTS) and parsed.units == "mm"
    assert np.asarray(parsed.poses).shape == (len(clip.keypoints_px), 17, 3)


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_lift_numpy_work_in_a_thread_gives_the_same_poses(
    lifter: Lifter, clip: Clip, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = Camera("h36m17", clip.width, clip.height, clip.fps)
    bad = clip.keypoints_px.copy()
    bad[7, 3, 1] = np.nan

    async def lift(off_loop_frames: int) -> tuple[Any, InvalidInput]:
        monkeypatch.setattr(service.lifting, "OFF_LOOP_FRAMES", off_loop_frames)
        async with serving_core(make_settings(), lifter) as core:
            out = await core.lift(camera, clip.keypoints_px, mode=mode)
            with pytest.raises(InvalidInput) as refused:
                await core.lift(camera, bad, mode=mode)
        return out, refused.value

    on_loop, on_loop_error = asyncio.run(lift(len(clip.keypoints_px) + 1))
    threaded, threaded_error = asyncio.run(lift(1))
    for name in ("poses_mm", "root_mm", "visible"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(on_loop, name))
    assert (threaded_error.location, threaded_error.message) == (
        on_loop_error.location,
        on_loop_error.message,
    )
    assert threaded_error.location == ("keypoints", 7, 3)
