"""gRPC fixtures: REST and gRPC over one core on loopback, on the memory store or the suite's redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from tests.service.rpc.rpckit import RpcLive
from tests.service.testkit import make_settings


@pytest.fixture()
def rpc_live(store_kind: str, lifter: Lifter, request: pytest.FixtureRequest) -> Iterator[RpcLive]:
    redis_url = request.getfixturevalue("redis_server").url if store_kind == "redis" else ""
    with RpcLive(make_settings(redis_url=redis_url), lifter) as live:
        yield live


@pytest.fixture()
def stub(rpc_live: RpcLive) -> Iterator[pb_grpc.PoseLifterStub]:
    with grpc.insecure_channel(rpc_live.target) as channel:
        yield pb_grpc.PoseLifterStub(channel)
