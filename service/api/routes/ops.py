"""Operations: liveness, readiness, Prometheus metrics, and what model is loaded."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from service.api.deps import Core, Owner
from service.api.schemas import ModelInfo, Status, error_responses
from service.errors import StoreUnavailable
from service.sessions import MemorySessionStore

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model_exclude_none=True)
async def healthz() -> Status:
    """The process is up."""
    return Status(status="ok")


@router.get("/readyz", responses=error_responses(503))
async def readyz(core: Core) -> Status:
    """The model is loaded, the session store answers, and the server is not shutting down."""
    await core.check_ready()
    return Status(status="ready", store="memory" if isinstance(core.store, MemorySessionStore) else "redis")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(core: Core) -> Response:
    """Prometheus metrics: requests, latency, batch sizes, queue depth, sessions, store errors."""
    with contextlib.suppress(StoreUnavailable):  # when down, the gauge keeps its last value
        core.metrics.active_sessions.set(await core.store.count())
    return Response(core.metrics.render(), media_type=core.metrics.content_type)


@router.get("/v1/model", responses=error_responses(401))
async def model(core: Core, _owner: Owner) -> ModelInfo:
    """The loaded model: joints, window, checkpoint id, training data and measured accuracy."""
    lifter = core.engine.lifter
    meta = lifter.metadata
    config = meta.get("config", {})
    return ModelInfo(
        joints=list(lifter.joints),
        window=lifter.window,
        checkpoint_id=lifter.checkpoint_id,
        kind=str(config.get("kind", "unknown")),
        config=config,
        device=str(lifter.device),
        backend=lifter.backend,
        training_data=meta.get("training_data"),
        validation=meta.get("validation"),
    )
