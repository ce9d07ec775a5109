"""POST /v1/lift: a whole sequence at once.

A clip can be thousands of frames, and its body is parsed and its answer written on the event loop that also
serves the live streams: the body is parsed and validated in one native pass, and the poses go from numpy
straight to JSON (`service.api.fastjson`); the documented schemas are still LiftRequest and LiftResponse.
"""

from __future__ import annotations

from fastapi import APIRouter

from poselift.skeleton import H36M17_JOINTS
from service.api.deps import Core, Owner
from service.api.fastjson import ModelBodyRoute, NumpyJSONResponse
from service.api.schemas import LiftRequest, LiftResponse, error_responses

router = APIRouter(prefix="/v1", tags=["lift"], route_class=ModelBodyRoute)


@router.post("/lift", response_model=LiftResponse, responses=error_responses(400, 401, 413, 422, 503))
async def lift(body: LiftRequest, core: Core, _owner: Owner) -> NumpyJSONResponse:
    """Lift a 2D keypoint sequence to 3D poses (causal unless `mode` is "offline")."""
    out = await core.lift(body.camera(), body.keypoints, body.scores, body.mode)
    return NumpyJSONResponse(  # LiftResponse's fields, in its order
        {
            "joints": list(H36M17_JOINTS),
            "units": "mm",
            "poses": out.poses_mm,
            "trajectory": out.root_mm,
            "visible": out.visible,
        }
    )
