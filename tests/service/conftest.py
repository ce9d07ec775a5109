"""Service fixtures: a real redis-server on a free port, live servers on loopback, a val clip in pixels."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from poselift import Lifter, load_lifter
from tests.service.clusterkit import LoopbackCluster
from tests.service.testkit import CHECKPOINT, Clip, LiveServer, RedisServer, project_segment, serve


@contextmanager
def _running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole suite (no persistence, free port, never 6379)."""
    with _running_redis() as server:
        yield server


@pytest.fixture()
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server, for tests that stop it."""
    with _running_redis() as server:
        yield server


@contextmanager
def _running_cluster() -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LoopbackCluster]:
    """One Redis Cluster (3 masters, 3 replicas, free ports) for the suite's tests that leave it healthy."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture()
def own_cluster() -> Iterator[LoopbackCluster]:
    """A private Redis Cluster, for tests that fail its masters over or kill them."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def lifter() -> Lifter:
    """The test checkpoint, loaded once and shared by every app the tests build."""
    return load_lifter(CHECKPOINT, device="cpu")


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def live(store_kind: str, lifter: Lifter, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server with the default test settings, once per store kind."""
    with serve(request, store_kind, lifter) as server:
        yield server


@pytest.fixture(scope="session")
def clip() -> Clip:
    """60 frames of a val clip ("soccer - kick ball") through a pinhole camera, in pixels."""
    return project_segment(12, frames=60)
