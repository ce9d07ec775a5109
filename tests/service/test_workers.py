"""`poselift serve` with POSELIFT_WORKERS=2 on a real redis-server: both workers answer on the shared ports,
/metrics counts the whole replica, a StreamLift session moves between workers with the offline poses, a
killed worker comes back, SIGTERM drains every worker and the supervisor exits 0; no Redis, no workers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import cast

import grpc
import httpx
import numpy as np
import pytest
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc
from pydantic import ValidationError

from poselift import Lifter
from service.config import describe_error
from service.workers import WORKER_HEADER
from tests.service.rpc.rpckit import Replica, frame, offline, open_request, poses_of, resume_request
from tests.service.testkit import TOLERANCE_MM, Clip, RedisServer, make_settings

# About a minute on an idle machine; a loaded 2-core one takes minutes to import and load three models.
pytestmark = pytest.mark.timeout(1200)
READY_S = 600
WORKERS = 2
ATTEMPTS = 40  # new connections tried to reach a given worker: all on one of two has odds 2**-39
NEW_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # a channel of its own, never a shared one


def worker_pids(parent_pid: int) -> list[int]:
    """The supervisor's worker processes (its children started by multiprocessing's spawn)."""
    try:
        with open(f"/proc/{parent_pid}/task/{parent_pid}/children") as f:
            children = [int(pid) for pid in f.read().split()]
    except OSError:
        return []
    pids = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    pids.append(pid)
        except OSError:
            pass
    return pids


def started(replica: Replica) -> dict[int, str]:
    """pid -> worker number, from the supervisor's "worker N started (pid P)" lines."""
    return {int(pid): n for n, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", replica.output())}


@pytest.fixture(scope="module")
def replica(redis_server: RedisServer, lifter: Lifter) -> Iterator[Replica]:
    """One `poselift serve` (the image's command) with two workers, for the module's tests in order; they
    read the ONNX graph `lifter` exported into the suite's cache instead of each exporting it again."""
    cache = (
        {"POSELIFT_CACHE_DIR": os.environ["POSELIFT_CACHE_DIR"]} if "POSELIFT_CACHE_DIR" in os.environ else {}
    )
    served = Replica(redis_server.url, POSELIFT_WORKERS=str(WORKERS), **cache)
    workers: set[int] = set()
    try:
        served.wait_ready(READY_S)
        yield served
    finally:
        workers.update(worker_pids(served.process.pid))
        served.stop()
        for pid in workers:  # never left behind, whatever a test did
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def rest_worker(replica: Replica, path: str = "/v1/model") -> str:
    """The worker that answered GET `path` on a new connection."""
    response = httpx.get(replica.url + path, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers[WORKER_HEADER]


def grpc_worker(channel: grpc.Channel) -> str:
    """The worker behind `channel`'s connection: an empty Lift is INVALID_ARGUMENT, with the metadata."""
    try:
        pb_grpc.PoseLifterStub(channel).Lift(pb.LiftRequest(), timeout=30)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        return str(dict(cast(grpc.Call, error).initial_metadata())[WORKER_HEADER])
    raise AssertionError("an empty Lift was answered")


def channel_on(replica: Replica, worker: str | None, avoid: str | None = None) -> tuple[grpc.Channel, str]:
    """A channel (one TCP connection) whose calls `worker` answers (None: any but `avoid`)."""
    for _ in range(ATTEMPTS):
        channel = grpc.insecure_channel(replica.target, options=NEW_CONNECTION)
        got = grpc_worker(channel)
        if got == worker or (worker is None and got != avoid):
            return channel, got
        channel.close()
    raise AssertionError(f"no connection reached worker {worker or f'other than {avoid}'}")


def test_workers_refused_without_redis() -> None:
    with pytest.raises(ValidationError) as error:
        make_settings(workers=2)
    assert "POSELIFT_WORKERS" in describe_error(error.value)
    assert make_settings(redis_url="redis://127.0.0.1:1/0", workers="auto").workers == (os.cpu_count() or 1)
    replica = Replica(POSELIFT_WORKERS="2")  # the real command, no POSELIFT_REDIS_URL
    try:
        assert replica.process.wait(180) == 2  # imports take a minute on a loaded 2-core machine
        assert "POSELIFT_WORKERS" in replica.output() and "POSELIFT_REDIS_URL" in replica.output()
    finally:
        replica.stop()


def test_workers_both_answer_and_metrics_count_the_replica(replica: Replica) -> None:
    assert len(worker_pids(replica.process.pid)) == WORKERS
    seen = [rest_worker(replica) for _ in range(10)]
    while set(seen) != {"1", "2"}:
        assert len(seen) < ATTEMPTS, seen
        seen.append(rest_worker(replica))
    for worker in ("1", "2"):
        channel, _ = channel_on(replica, worker)
        channel.close()
    # Any worker's /metrics is the replica's: every GET above, whichever worker answered it.
    for _ in range(4):
        text = httpx.get(replica.url + "/metrics", timeout=30).text
        counted = re.search(r'^poselift_requests_total\{method="GET",route="/v1/model",status="200"\} (\S+)$',
                            text, flags=re.MULTILINE)  # fmt: skip
        assert counted is not None and float(counted.group(1)) == len(seen)


def test_workers_stream_session_moves_between_workers(replica: Replica, lifter: Lifter, clip: Clip) -> None:
    total = len(clip.keypoints_px)
    thirds = [range(0, 20), range(20, 40), range(40, total)]
    poses: list[np.ndarray] = []
    workers: list[str] = []
    session_id = ""
    for part, indices in enumerate(thirds):
        channel, worker = channel_on(replica, None, avoid=workers[-1] if workers else None)
        with channel:
            first = open_request(clip) if part == 0 else resume_request(session_id)
            call = pb_grpc.PoseLifterStub(channel).StreamLift(
                iter([first, *(frame(clip, i) for i in indices)]), timeout=120
            )
            replies = list(call)
            assert dict(call.initial_metadata())[WORKER_HEADER] == worker  # the probed connection's worker
        session_id = session_id or replies[0].session.session_id
        assert replies[0].session.last_seq == indices[0] - 1
        seqs, got = poses_of(replies[1:])
        assert seqs == list(indices)
        poses.append(got)
        workers.append(worker)
    assert workers[0] != workers[1] != workers[2]
    np.testing.assert_allclose(np.concatenate(poses), offline(lifter, clip), rtol=0, atol=TOLERANCE_MM)


def test_workers_killed_worker_is_restarted(replica: Replica) -> None:
    before = worker_pids(replica.process.pid)
    victim = before[0]
    number = started(replica)[victim]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + READY_S
    while True:  # a new process in its place, with its number, serving
        now = worker_pids(replica.process.pid)
        reborn = [pid for pid in now if pid not in before]
        if reborn and started(replica).get(reborn[0]) == number:
            break
        assert time.monotonic() < deadline, replica.output()
        time.sleep(0.2)
    assert "was killed by SIGKILL" in replica.output()
    while True:  # the other worker answers meanwhile; the new one once it has loaded its model
        try:
            channel, _ = channel_on(replica, number)
            break
        except AssertionError:
            assert time.monotonic() < deadline, replica.output()
            time.sleep(1)
    channel.close()
    assert replica.process.poll() is None


def test_workers_sigterm_drains_every_worker_and_exits_0(
    replica: Replica, lifter: Lifter, clip: Clip
) -> None:
    workers = worker_pids(replica.process.pid)
    replies: list[pb.StreamLiftResponse] = []
    ended: list[grpc.RpcError] = []
    channel, _ = channel_on(replica, None)

    def live_camera() -> Iterator[pb.StreamLiftRequest]:
        yield open_request(clip)
        for i in range(len(clip.keypoints_px)):
            time.sleep(0.05)
            yield frame(clip, i)

    def run() -> None:
        try:
            replies.extend(pb_grpc.PoseLifterStub(channel).StreamLift(live_camera(), timeout=120))
        except grpc.RpcError as error:
            ended.append(error)

    with channel:
        streaming = threading.Thread(target=run)
        streaming.start()
        deadline = time.monotonic() + 60
        while len(replies) < 6:
            assert time.monotonic() < deadline and streaming.is_alive(), replica.output()
            time.sleep(0.01)
        replica.process.send_signal(signal.SIGTERM)
        streaming.join(60)
    assert replica.process.wait(60) == 0, replica.output()
    output = replica.output()
    assert output.count("gRPC server stopped") >= WORKERS and "draining 2 worker(s)" in output
    assert [error.code() for error in ended] == [grpc.StatusCode.UNAVAILABLE]
    assert "shutting down" in str(ended[0].details())
    seqs, poses = poses_of(replies[1:])  # every frame it took was answered, in order
    assert seqs == list(range(len(seqs))) and 5 <= len(seqs) < len(clip.keypoints_px)
    np.testing.assert_allclose(poses, offline(lifter, clip)[: len(seqs)], rtol=0, atol=TOLERANCE_MM)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]  # the supervisor reaped them all
