"""The FastAPI application: built from a `Settings`, with the engine and the session store in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from poselift import Lifter
from service.api.handlers import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, CatchAllMiddleware, MetricsMiddleware
from service.api.routes import lift, ops, sessions
from service.config import Settings
from service.engine import Engine, load_model
from service.lifting import LiftingCore
from service.metrics import Metrics
from service.sessions import build_store

DESCRIPTION = """\
2D human keypoints in, temporally consistent 3D poses out: camera frame (x right, y down, z forward),
millimetres, pelvis at the origin, Human3.6M's 17 joints. Send a whole clip to `/v1/lift`, or open a
session and feed it frame batches as the video runs; both give the same poses.
Errors are `{"error": {"code", "message"}}`.
"""


def create_app(settings: Settings, lifter: Lifter | None = None) -> FastAPI:
    """The REST app. `lifter`: an already loaded model (else `settings.checkpoint` is loaded at start-up)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(lifter or load_model(settings), settings.max_batch, settings.batch_wait_ms, metrics)
        engine.start()
        store = build_store(
            settings.redis_url,
            settings.session_ttl_s,
            settings.store_timeout_s,
            settings.max_sessions,
            on_error=lambda operation: metrics.store_errors.labels(operation).inc(),
        )
        app.state.core = LiftingCore(settings, engine, store, metrics)
        try:
            yield
        finally:
            engine.stop()
            await store.close()

    app = FastAPI(title="poselift", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.metrics = metrics
    for module in (lift, sessions, ops):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost
    return app
