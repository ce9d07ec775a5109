"""`poselift serve`: settings from the environment, the model loaded, REST and gRPC served until SIGTERM.

One event loop runs everything: uvicorn and the grpc.aio server over one lifting core. On SIGTERM or SIGINT
`run` drains: readiness fails first (REST /readyz 503, gRPC health NOT_SERVING), open gRPC streams answer
the frame in hand and end with UNAVAILABLE (clients resume elsewhere), in-flight requests finish, and both
servers stop within `GRACE_S`; then the batching worker drains and the store is closed. A second signal
stops at once. With `POSELIFT_WORKERS` > 1 the process supervises that many such servers, each in its own
process on the same ports (`service.workers`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from pydantic import ValidationError

from poselift import Lifter
from service.api import create_app
from service.config import ENV_PREFIX, Settings, describe_error
from service.engine import load_model
from service.lifting import LiftingCore, serving_core
from service.rpc.server import NOTICE_S, RpcServer

if TYPE_CHECKING:
    from service.workers import Worker

log = logging.getLogger("poselift.serve")
GRACE_S = 10


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `run` owns SIGTERM/SIGINT for every server in the loop."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run(settings: Settings, lifter: Lifter, worker: Worker | None = None) -> None:
    """Serve REST on `settings.http_port` and gRPC on `settings.grpc_port` until SIGTERM or SIGINT.

    As one of several `worker`s (`service.workers`), both ports are shared with the others (SO_REUSEPORT).
    """
    async with serving_core(settings, lifter) as core:
        rpc = RpcServer(core, metadata=worker.metadata if worker else ())
        await rpc.start(settings.host, settings.grpc_port, reuse_port=worker is not None)
        app = create_app(settings, core=core)
        config = uvicorn.Config(
            worker.asgi(app) if worker else app,
            host=settings.host,
            port=settings.http_port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=GRACE_S,
            access_log=settings.log_level == "debug",
        )
        http = _Server(config)
        draining: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_exit, core, http, rpc, draining, sig)
        watch = asyncio.create_task(worker.watch(http)) if worker else None
        try:
            await http.serve([worker.http_socket(settings.host, settings.http_port)] if worker else None)
        finally:
            if watch is not None:
                watch.cancel()
            if not draining:  # uvicorn ended by itself (it could not bind its port)
                draining.append(asyncio.ensure_future(rpc.stop(0)))
            await asyncio.gather(*draining)


def _request_exit(
    core: LiftingCore,
    http: uvicorn.Server,
    rpc: RpcServer,
    draining: list[asyncio.Task[None]],
    sig: signal.Signals,
) -> None:
    if draining:  # a second signal: stop now
        log.info("received %s again: stopping now", sig.name)
        http.force_exit = True
        draining.append(asyncio.ensure_future(rpc.stop(0)))
        return
    log.info("received %s: shutting down gracefully", sig.name)
    core.draining = True  # REST readiness fails from now on; gRPC health turns NOT_SERVING in rpc.stop
    draining.append(asyncio.ensure_future(_drain(http, rpc)))


async def _drain(http: uvicorn.Server, rpc: RpcServer) -> None:
    """Both transports alike: readiness fails now; after `NOTICE_S` they stop taking new work and finish."""
    stopping = asyncio.ensure_future(rpc.stop(GRACE_S))
    await asyncio.sleep(NOTICE_S)
    http.should_exit = True
    await stopping


def _redacted(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def serve() -> int:
    """Entry point of `poselift serve`; returns the process exit code (2: unusable settings)."""
    try:
        settings = Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.workers > 1:
        from service.workers import supervise

        return supervise(settings)
    return serve_settings(settings)


def serve_settings(settings: Settings, worker: Worker | None = None) -> int:
    """Load the model and serve until SIGTERM (as one of several `worker`s, or alone); the exit code."""
    try:
        lifter = load_model(settings)
    except RuntimeError as error:
        print(f"poselift serve: {error}", file=sys.stderr)
        return 2
    store = (
        f"Redis at {_redacted(settings.redis_url)}" if settings.redis_url else "the in-process session store"
    )
    log.info(
        "model %s (%s, window %d) on %s with %s; %s; REST on %s:%d, gRPC on %s:%d",
        lifter.checkpoint_id, lifter.metadata.get("config", {}).get("kind"), lifter.window, lifter.device,
        lifter.backend,
        store, settings.host, settings.http_port, settings.host, settings.grpc_port,
    )  # fmt: skip
    # Everything loaded so far (torch, the model, the modules of the web stacks) lives as long as the
    # process: taken out of the cyclic collector's view, it is no longer re-scanned by every full collection,
    # which otherwise cost a third of the event loop's time under 64 streams (py-spy, bench/profile.py).
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(run(settings, lifter, worker))
    except OSError as error:  # a port cannot be bound
        print(f"poselift serve: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    """`poselift serve [--help]`: every setting comes from the environment (`POSELIFT_*`)."""
    settings_help = "\n".join(
        f"  {ENV_PREFIX}{name.upper():<26} {field.description or ''}"
        for name, field in Settings.model_fields.items()
    )
    parser = argparse.ArgumentParser(
        prog="poselift serve",
        description="Serve REST and gRPC over one lifting core until SIGTERM or SIGINT (graceful drain).",
        epilog=f"settings (environment variables):\n{settings_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    return serve()
