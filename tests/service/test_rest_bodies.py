"""`/v1/lift`'s fast JSON path (`service.api.fastjson`) answers exactly what FastAPI's own path answers.

The request side is checked differentially: one app, one body model, two routes, one with FastAPI's body
handling and one with `ModelBodyRoute`; every body (odd ones written out, and generated ones) must get the
same status and the same bytes from both, the same error code, location and message for a refused one. The
response side: numpy arrays written by orjson read back as the very float32 values, in LiftResponse's shape.
The core's whole-clip numpy work gives the same poses in a worker thread as on the loop.
"""

from __future__ import annotations

import asyncio
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
from service.api import create_app
from service.api.fastjson import ModelBodyRoute, NumpyJSONResponse
from service.api.handlers import install_error_handlers
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
    """What a route made of its body: every field, as JSON (NaN as null)."""
    return Response(body.model_dump_json(), media_type="application/json")


def _app() -> FastAPI:
    app = FastAPI()
    plain, fast = APIRouter(prefix="/plain"), APIRouter(prefix="/fast", route_class=ModelBodyRoute)
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


def test_numpy_json_reads_back_as_the_same_float32_values() -> None:
    rng = np.random.default_rng(0)
    poses = (rng.normal(size=(5, 17, 3)) * 1000).astype(np.float32)
    poses[1, 2, 0] = np.nan
    root = np.asfortranarray(rng.normal(size=(5, 3)).astype(np.float32) * 4000)  # not C-contiguous
    visible = rng.uniform(size=5).astype(np.float32)
    content = {"poses": poses, "trajectory": root, "visible": visible, "none": None}
    answer = json.loads(bytes(NumpyJSONResponse(content).body))
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
