"""`python -m service.healthcheck`: exit 0 when this machine's replica is ready on both transports, else 1.

The container HEALTHCHECK (and compose's): REST `GET /readyz` and the gRPC `grpc.health.v1.Health/Check`, on
loopback at the ports the settings name (`POSELIFT_HTTP_PORT`, `POSELIFT_GRPC_PORT`). Both fail while the
model loads, while the session store is unreachable, and once a graceful shutdown began.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.config import Settings

TIMEOUT_S = 2.0


def check_rest(port: int) -> str | None:
    """None if `/readyz` answers 200, else why not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=TIMEOUT_S) as response:
            return None if response.status == 200 else f"REST /readyz answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"REST /readyz answered {error.code}: {error.read().decode(errors='replace')}"
    except OSError as error:
        return f"REST /readyz: {error}"


def check_grpc(port: int) -> str | None:
    """None if the gRPC health service says SERVING, else why not."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError as error:
            return f"gRPC health: {error.code().name}: {error.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"gRPC health: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main() -> int:
    settings = Settings()
    problems = [p for p in (check_rest(settings.http_port), check_grpc(settings.grpc_port)) if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
