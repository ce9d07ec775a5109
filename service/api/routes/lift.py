"""POST /v1/lift: a whole sequence at once."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import Core, Owner
from service.api.schemas import LiftRequest, LiftResponse, error_responses

router = APIRouter(prefix="/v1", tags=["lift"])


@router.post("/lift", responses=error_responses(400, 401, 413, 422, 503))
async def lift(body: LiftRequest, core: Core, _owner: Owner) -> LiftResponse:
    """Lift a 2D keypoint sequence to 3D poses (causal unless `mode` is "offline")."""
    out = await core.lift(body.camera(), body.keypoints, body.scores, body.mode)
    return LiftResponse(
        poses=out.poses_mm.tolist(),
        trajectory=None if out.root_mm is None else out.root_mm.tolist(),
        visible=out.visible.tolist(),
    )
