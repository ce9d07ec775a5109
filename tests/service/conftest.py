"""Service fixtures: a real redis-server on a free port, live servers on loopback, a val clip in pixels."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import torch
from service_testkit import CHECKPOINT, Clip, LiveServer, RedisServer, make_settings, project_segment

from poselift import Lifter, load_lifter
from service.api import create_app


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole suite (no persistence, free port, never 6379)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture()
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server, for tests that stop it."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lifter() -> Lifter:
    """The test checkpoint, loaded once and shared by every app the tests build."""
    torch.set_num_threads(1)  # small batches; several threads only contend on a busy CI machine
    return load_lifter(CHECKPOINT, device="cpu")


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def live(store_kind: str, lifter: Lifter, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server (real HTTP on loopback) on the memory store or on the suite's redis-server."""
    redis_url = request.getfixturevalue("redis_server").url if store_kind == "redis" else ""
    with LiveServer(create_app(make_settings(redis_url=redis_url), lifter)) as server:
        yield server


@pytest.fixture(scope="session")
def clip() -> Clip:
    """60 frames of a val clip ("soccer - kick ball") through a pinhole camera, in pixels."""
    return project_segment(12, frames=60)
