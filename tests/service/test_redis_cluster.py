"""Sessions on a real Redis Cluster (3 masters, 1 replica each, on loopback): keys spread over every master,
every script on one slot, the live-session count over all indexes, and REST sessions carried through a master
failover (`CLUSTER FAILOVER`) and a master SIGKILL with every pose equal to offline lifting.

The StreamLift side (`poselift serve` replicas, many resuming streams) is the cluster soak in
tests/service/rpc/test_soak.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import redis.cluster
from redis.crc import key_slot

from poselift import Lifter
from service.api import create_app
from service.config import Settings
from service.errors import StoreUnavailable
from service.redis_cluster import cluster_seeds
from service.sessions import (
    CLUSTER_SLOTS,
    CLUSTER_TAGS,
    Camera,
    KeyLayout,
    RedisSessionStore,
    SessionState,
    cluster_tags,
)
from tests.service.clusterkit import LoopbackCluster, Node, wait_for
from tests.service.testkit import TOLERANCE_MM, Clip, LiveServer, frames_body, make_settings

CAMERA = Camera("h36m17", 1920.0, 1080.0, 30.0)


def state(session_id: str) -> SessionState:
    return SessionState(session_id=session_id, camera=CAMERA, owner="alice", window=5)


def ids(count: int) -> list[str]:
    return [f"{k:032x}" for k in range(count)]


def test_cluster_url_lists_seed_nodes() -> None:
    assert cluster_seeds("redis+cluster://u:p@10.0.0.1:7000,[::1]:7001,redis-2/0") == [
        ("10.0.0.1", 7000),
        ("::1", 7001),
        ("redis-2", 6379),
    ]
    assert Settings(redis_url="rediss+cluster://a:7000,b:7001").redis_url == "rediss+cluster://a:7000,b:7001"
    for bad in (
        "redis+cluster://",
        "redis+cluster://a:7000,",
        "redis+cluster://a:x",
        "redis+cluster://a:1/2",
    ):
        with pytest.raises(ValueError):
            Settings(redis_url=bad)


def test_cluster_session_and_its_index_share_a_slot_and_tags_spread_evenly() -> None:
    layout = KeyLayout(cluster_tags())
    slots = sorted(key_slot(f"{{{tag}}}".encode()) for tag in layout.tags)
    assert slots == [k * CLUSTER_SLOTS // CLUSTER_TAGS for k in range(CLUSTER_TAGS)]
    for session_id in [*ids(500), "{braces}in-an-id", "x"]:
        session, index = layout.session(session_id), layout.index(session_id)
        assert key_slot(session.encode()) == key_slot(index.encode())
        assert session.endswith(session_id) and index in layout.indexes()
    used = Counter(layout.index(session_id) for session_id in ids(5000))
    assert len(used) > 0.95 * CLUSTER_TAGS  # ids spread over (nearly) every index
    assert KeyLayout().session("abc") == "poselift:session:abc"  # one Redis: the keys of before


def test_cluster_sessions_spread_over_every_master(redis_cluster: LoopbackCluster) -> None:
    redis_cluster.flush()
    sessions = ids(300)

    async def body() -> tuple[list[str], int]:
        store = RedisSessionStore.from_url(redis_cluster.url, 60, timeout_s=5.0)  # 300 at once, 64 by 64
        try:
            await store.create(state(sessions[0]))  # the topology read and the scripts loaded once
            await asyncio.gather(*[store.create(state(s)) for s in sessions[1:]])
            for s in sessions[:3]:
                await store.delete(s)
            return [store.key(s) for s in sessions], await store.count()
        finally:
            await store.close()

    keys, count = asyncio.run(body())
    assert count == 297
    per_master = Counter(redis_cluster.master_of_key(key).port for key in keys)
    assert len(per_master) == 3, per_master  # every master holds sessions
    assert min(per_master.values()) > 300 / 3 * 0.6, per_master  # and none far fewer than its share
    node = redis_cluster.nodes_alive()[0]
    # A cluster client: it follows MOVED to each key's master.
    with redis.cluster.RedisCluster(host="127.0.0.1", port=node.port) as client:
        assert all(client.type(key) == b"hash" and 0 < client.ttl(key) <= 60 for key in keys[3:])
        assert not any(client.exists(key) for key in keys[:3])  # the deleted ones are gone
    for master in redis_cluster.masters():
        with master.client() as client:
            assert "cmdstat_scan" not in client.info("commandstats")  # counting never scans


def test_cluster_slots_without_a_master_are_unavailable_not_an_error(own_cluster: LoopbackCluster) -> None:
    """A master and its replica both down: the cluster refuses every key (CLUSTERDOWN, as Redis' default
    `cluster-require-full-coverage yes` has it) and the dead master does not answer; either way each call is
    StoreUnavailable (a 503 to retry), never an error, and the readiness ping says the store cannot serve."""
    sessions = ids(6)
    errors: list[str] = []

    async def body() -> tuple[list[str], str]:
        store = RedisSessionStore.from_url(own_cluster.url, 60, timeout_s=5.0, on_error=errors.append)
        try:
            for s in sessions:
                await store.create(state(s))
            doomed = own_cluster.master_of_key(store.key(sessions[0]))
            own_cluster.kill(own_cluster.replica_of(doomed))
            own_cluster.kill(doomed)
            wait_for(lambda: _state_of(own_cluster) == "fail", 30, "the cluster never saw the slots unserved")
            refusals = []
            for s in sessions:
                with pytest.raises(StoreUnavailable) as refused:
                    await store.load(s)
                refusals.append(refused.value.message)
            with pytest.raises(StoreUnavailable) as refused:
                await store.ping()
            return refusals, refused.value.message
        finally:
            await store.close()

    refusals, ping = asyncio.run(body())
    assert all("unreachable (load:" in message for message in refusals), refusals
    assert "unreachable (ping:" in ping
    assert errors == ["load"] * len(sessions) + ["ping"]  # each counted as a store error


def _state_of(cluster: LoopbackCluster) -> str:
    with cluster.nodes_alive()[0].client() as client:
        return str(client.cluster("info")["cluster_state"])


@dataclass
class RestClient:
    """Pushes a clip through a REST session `batch` frames at a time, and on a 503 resumes the way a client
    should: asks the session's last seq and goes on after it."""

    http: httpx.Client
    clip: Clip
    session_id: str
    batch: int = 4
    poses: dict[int, Any] = field(default_factory=dict)  # seq -> joints
    answered: list[int] = field(default_factory=list)  # every seq answered, in order
    refused: int = 0  # 503s

    def push(self, start: int, stop: int) -> None:
        seqs = list(range(len(self.clip.keypoints_px)))
        first = start
        while first < stop:
            body = frames_body(self.clip, seqs, range(first, min(first + self.batch, stop)))
            response = self.http.post(f"/v1/sessions/{self.session_id}/frames", json=body)
            if response.status_code == 503:
                self.refused += 1
                time.sleep(0.05)
                status = self.http.get(f"/v1/sessions/{self.session_id}")
                if status.status_code == 200:
                    first = min(first, int(status.json()["last_seq"]) + 1)
                continue
            assert response.status_code == 200, response.text
            for pose in response.json()["poses"]:
                self.poses[pose["seq"]] = pose["joints"]
                self.answered.append(pose["seq"])
            first += self.batch


def client_open(http: httpx.Client, clip: Clip) -> str:
    """Open a session, retrying a 503 as a client does (the first call of a cluster client reads the
    topology and loads the scripts on every node: on a loaded test machine it can take the store timeout)."""
    for _ in range(20):
        response = http.post("/v1/sessions", json=clip.camera())
        if response.status_code != 503:
            break
        time.sleep(0.2)
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def _wait_replicated(master: Node, replica: Node) -> None:
    """Until the replica has every write the master made (so killing the master loses none)."""

    def caught_up() -> bool:
        offset = int(str(master.info("replication")["master_repl_offset"]))
        return int(str(replica.info("replication")["master_repl_offset"])) >= offset

    wait_for(caught_up, 10, "the replica did not catch up")


def test_cluster_rest_session_through_master_failover_and_master_kill(
    own_cluster: LoopbackCluster, lifter: Lifter, clip: Clip
) -> None:
    """A REST session streams its clip; between batches the master holding it is failed over, then the new
    master is SIGKILLed: the pushes right after the kill answer 503 until the replica takes over, the client
    resumes after the session's last seq, and every pose equals offline lifting, each seq answered once."""
    settings = make_settings(redis_url=own_cluster.url, store_timeout_s=1.0)
    total = len(clip.keypoints_px)
    with (
        LiveServer(create_app(settings, lifter)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        session_id = client_open(http, clip)
        key = KeyLayout(cluster_tags()).session(session_id)
        client = RestClient(http, clip, session_id)
        client.push(0, 20)

        master = own_cluster.master_of_key(key)
        promoted = own_cluster.manual_failover(master)  # coordinated: no write can be lost
        assert own_cluster.master_of_key(key).port == promoted.port
        client.push(20, 40)
        refused_before_kill = client.refused

        own_cluster.wait_healthy()
        _wait_replicated(promoted, own_cluster.replica_of(promoted))
        own_cluster.kill(promoted)  # a crash: its replica takes over after the node timeout
        client.push(40, total)
        refused_after_kill = client.refused - refused_before_kill
        status = http.get(f"/v1/sessions/{session_id}").json()

    assert client.answered == list(range(total))  # every seq answered once, in order
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(
        np.asarray([client.poses[q] for q in range(total)]), offline, rtol=0, atol=TOLERANCE_MM
    )
    assert refused_after_kill > 0, "no push was refused while the killed master's slots had no master"
    assert (status["frames_seen"], status["last_seq"]) == (total, total - 1)  # every frame entered once
