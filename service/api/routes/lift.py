"""POST /v1/lift: a whole sequence at once.

A clip can be thousands of frames, and its body is parsed and its answer written on the event loop that also
serves the live streams: the body is parsed and validated natively, a big one's keypoints and scores read into
numpy a few hundred frames at a time, and the poses go from numpy straight to JSON in slices, the loop free
between them (`service.api.fastjson`) for `POSELIFT_BULK_PAUSE_MS` while live streams are open
(`LiftingCore.bulk_pause_s`); the documented schemas are still LiftRequest and LiftResponse.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import APIRouter, Request

from poselift.skeleton import H36M17_JOINTS, NUM_JOINTS
from service.api.deps import Core, Owner
from service.api.fastjson import ArrayShapes, JSONBytesResponse, ModelBodyRoute, render_sliced
from service.api.schemas import LiftRequest, LiftResponse, error_responses
from service.lifting import LiftingCore


class LiftRoute(ModelBodyRoute):
    """A big body's keypoints (T, 17, 2) and scores (T, 17) are read as numpy arrays, in slices."""

    arrays: ClassVar[ArrayShapes] = {"keypoints": (NUM_JOINTS, 2), "scores": (NUM_JOINTS,)}

    def pause_s(self, request: Request) -> float:
        core: LiftingCore | None = getattr(request.app.state, "core", None)
        return 0.0 if core is None else core.bulk_pause_s()


router = APIRouter(prefix="/v1", tags=["lift"], route_class=LiftRoute)


@router.post("/lift", response_model=LiftResponse, responses=error_responses(400, 401, 413, 422, 503))
async def lift(body: LiftRequest, core: Core, _owner: Owner) -> JSONBytesResponse:
    """Lift a 2D keypoint sequence to 3D poses (causal unless `mode` is "offline")."""
    out = await core.lift(body.camera(), body.keypoints, body.scores, body.mode)
    content = {  # LiftResponse's fields, in its order
        "joints": list(H36M17_JOINTS),
        "units": "mm",
        "poses": out.poses_mm,
        "trajectory": out.root_mm,
        "visible": out.visible,
    }
    return JSONBytesResponse(await render_sliced(content, core.bulk_pause_s()))
