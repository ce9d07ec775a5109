"""The grpc.aio server: `PoseLifter`, the standard health service and reflection, in the caller's event loop.

`poselift serve` runs it beside uvicorn in one loop, over the same `LiftingCore`. Health follows the core's
readiness (model loaded, store reachable, not draining), polled every `HEALTH_INTERVAL_S`. `stop(grace)` is
the graceful shutdown: health NOT_SERVING first, then every stream answers the frame in hand and ends with
UNAVAILABLE (its client resumes elsewhere), Lift calls finish, and the server stops within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from poselift.skeleton import NUM_JOINTS
from service.config import Settings
from service.errors import ServiceError
from service.lifting import LiftingCore
from service.rpc.servicer import SERVICE, PoseLifterServicer, add_to_server

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 1.0
NOTICE_S = 0.2  # from NOT_SERVING to ending streams and refusing new calls: health watchers hear it first
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: Settings, reuse_port: bool = False) -> list[tuple[str, int]]:
    """Channel arguments: message size limits from the settings, keepalive to notice vanished clients;
    the port shared (SO_REUSEPORT) only by the workers of one replica (`service.workers`)."""
    largest_reply = settings.max_frames_per_request * NUM_JOINTS * 3 * 4 + 64 * 1024  # float32 poses
    return [
        ("grpc.max_receive_message_length", settings.max_body_bytes),  # RESOURCE_EXHAUSTED above
        ("grpc.max_send_message_length", max(largest_reply, settings.max_body_bytes)),
        ("grpc.keepalive_time_ms", 30_000),  # ping an idle connection; a dead peer's streams end
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", int(reuse_port)),  # else a port in use is an error, not a silently shared port
    ]


class RpcServer:
    """One gRPC server over `core`; `await start(host, port)`, later `await stop(grace_s)`."""

    def __init__(self, core: LiftingCore, metadata: Sequence[tuple[str, str]] = ()):
        self.core = core
        self.servicer = PoseLifterServicer(core, metadata)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._status: int | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Bind `host:port` (0: any free port; shared with SO_REUSEPORT if `reuse_port`), start serving;
        returns the bound port.

        Raises:
            OSError: the port cannot be bound.
        """
        settings = self.core.settings
        server = grpc.aio.server(
            options=server_options(settings, reuse_port),
            maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        )
        add_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot serve gRPC on {address}: {error}") from error
        await self._update_health()  # the health service starts out SERVING: correct it before the first call
        await server.start()
        self._server = server
        self._watch = asyncio.create_task(self._watch_readiness(), name="poselift-grpc-health")
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Graceful shutdown: NOT_SERVING; streams answer the frame in hand and end; stop within `grace_s`."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        if self._server is None:
            return
        log.info("gRPC health: NOT_SERVING (shutting down); %d call(s) in flight", self.servicer.active)
        await asyncio.sleep(NOTICE_S)
        self.servicer.closing.set()
        stopping = asyncio.ensure_future(self._server.stop(grace_s))  # refuses new RPCs from now on
        if await self.servicer.wait_idle(grace_s):
            await self._server.stop(None)  # only health watches are left: they never end by themselves
        await stopping
        log.info("gRPC server stopped")

    async def _watch_readiness(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            await self._update_health()

    async def _update_health(self) -> None:
        try:
            await self.core.check_ready()
            status, why = SERVING, ""
        except ServiceError as error:
            status, why = NOT_SERVING, error.message
        if status != self._status:
            log.log(
                logging.INFO if status == SERVING else logging.WARNING,
                "gRPC health: %s%s", health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                f" ({why})" if why else "",
            )  # fmt: skip
            for service in ("", SERVICE):
                await self.health.set(service, status)
            self._status = status
