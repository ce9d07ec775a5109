"""`poselift serve`: settings from the environment, the model loaded, REST served until SIGTERM/SIGINT.

One event loop runs everything (the gRPC server joins it in a later issue): `run(settings)` starts the servers
and stops them gracefully — in-flight requests finish, the batching worker drains, the store is closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Generator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from pydantic import ValidationError

from poselift import Lifter
from service.api import create_app
from service.config import Settings, describe_error
from service.engine import load_model

log = logging.getLogger("poselift.serve")
GRACE_S = 10


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `run` owns SIGTERM/SIGINT for every server in the loop."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run(settings: Settings, lifter: Lifter) -> None:
    """Serve REST on `settings.http_port` until SIGTERM or SIGINT, then shut down gracefully."""
    config = uvicorn.Config(
        create_app(settings, lifter),
        host=settings.host,
        port=settings.http_port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACE_S,
        access_log=settings.log_level == "debug",
    )
    http = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_exit, http, sig)
    await http.serve()


def _request_exit(server: uvicorn.Server, sig: signal.Signals) -> None:
    log.info("received %s: shutting down gracefully", sig.name)
    if server.should_exit:  # a second signal: stop now
        server.force_exit = True
    server.should_exit = True


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
    try:
        lifter = load_model(settings)
    except RuntimeError as error:
        print(f"poselift serve: {error}", file=sys.stderr)
        return 2
    store = (
        f"Redis at {_redacted(settings.redis_url)}" if settings.redis_url else "the in-process session store"
    )
    log.info(
        "model %s (%s, window %d) on %s; %s; REST on %s:%d",
        lifter.checkpoint_id, lifter.metadata.get("config", {}).get("kind"), lifter.window, lifter.device,
        store, settings.host, settings.http_port,
    )  # fmt: skip
    asyncio.run(run(settings, lifter))
    return 0
