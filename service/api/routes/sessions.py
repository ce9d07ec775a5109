"""/v1/sessions: a live video's frames in batches, each pose computed from the session's stored history."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import Core, Owner
from service.api.schemas import (
    FramesRequest,
    FramesResponse,
    PoseOut,
    SessionCreate,
    SessionCreated,
    SessionStatus,
    error_responses,
)
from service.lifting import FrameInput, SessionInfo

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _status(info: SessionInfo) -> SessionStatus:
    cam = info.camera
    return SessionStatus(
        session_id=info.session_id,
        last_seq=info.last_seq,
        frames_seen=info.frames_seen,
        expires_in_s=info.expires_in_s,
        window=info.window,
        layout=cam.layout,  # type: ignore[arg-type]
        width=cam.width,
        height=cam.height,
        fps=cam.fps,
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 401, 422, 429, 503))
async def open_session(body: SessionCreate, core: Core, owner: Owner) -> SessionCreated:
    """Open a session for one camera's view of one person."""
    info = await core.open_session(body.camera(), owner)
    return SessionCreated(session_id=info.session_id, expires_in_s=info.expires_in_s, window=info.window)


@router.post("/{session_id}/frames", responses=error_responses(400, 401, 404, 409, 413, 422, 503))
async def push_frames(session_id: str, body: FramesRequest, core: Core, owner: Owner) -> FramesResponse:
    """Lift a batch of frames (increasing seq); a resent seq returns its stored pose and changes nothing."""
    frames = [FrameInput(f.seq, f.keypoints, f.scores) for f in body.frames]
    poses = await core.push_frames(session_id, frames, owner)
    return FramesResponse(
        poses=[
            PoseOut(
                seq=p.seq,
                joints=p.pose_mm.tolist(),
                root=None if p.root_mm is None else p.root_mm.tolist(),
                visible=p.visible,
            )
            for p in poses
        ]
    )


@router.get("/{session_id}", responses=error_responses(401, 404, 409, 503))
async def get_session(session_id: str, core: Core, owner: Owner) -> SessionStatus:
    """A session's last seq, frames seen and remaining lifetime."""
    return _status(await core.get_session(session_id, owner))


@router.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 404, 409, 503),
)
async def close_session(session_id: str, core: Core, owner: Owner) -> None:
    """Close a session now."""
    await core.close_session(session_id, owner)
