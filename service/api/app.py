"""The FastAPI application: built from a `Settings`; the lifting core is its own (opened in its lifespan) or,
in `poselift serve`, the one it shares with the gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from poselift import Lifter
from service.api.handlers import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, CatchAllMiddleware, MetricsMiddleware
from service.api.routes import lift, ops, sessions
from service.config import Settings
from service.lifting import LiftingCore, serving_core
from service.metrics import Metrics

DESCRIPTION = """\
2D human keypoints in, temporally consistent 3D poses out: camera frame (x right, y down, z forward),
millimetres, pelvis at the origin, Human3.6M's 17 joints. Send a whole clip to `/v1/lift`, or open a
session and feed it frame batches as the video runs; both give the same poses.
Errors are `{"error": {"code", "message", "location"}}`, `location` the path of the offending part of the
body (absent when there is none); gRPC sends the same. A page to watch the poses in 3D is served at
`/viewer/`.
"""
# The viewer page (docs/viewer.md): static files, loaded without a key; the page sends the user's key.
VIEWER_DIR = Path(__file__).resolve().parent / "static" / "viewer"


def create_app(settings: Settings, lifter: Lifter | None = None, core: LiftingCore | None = None) -> FastAPI:
    """The REST app.

    Args:
        lifter: an already loaded model (else `settings.checkpoint` is loaded at start-up).
        core: a running core to serve (its owner opens and closes it); else the app runs its own.
    """
    metrics = core.metrics if core is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if core is not None:
            app.state.core = core
            yield
            return
        async with serving_core(settings, lifter, metrics) as own:
            app.state.core = own
            yield

    app = FastAPI(title="poselift", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.metrics = metrics
    for module in (lift, sessions, ops):
        app.include_router(module.router)
    app.mount("/viewer", StaticFiles(directory=VIEWER_DIR, html=True), name="viewer")
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost
    return app
