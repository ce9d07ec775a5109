"""The compose topology without containers: a real redis-server, the compose file's lifter replicas as
`poselift serve` processes (started exactly as the image's command), and nginx with deploy/nginx.conf on
loopback. A val clip streams through the balancer with examples/stream_client.py; the replica serving it is
killed with SIGKILL mid-stream; the client resumes through the balancer on the other replica. Every pose is
the one an uninterrupted stream gives, and no frame is lost or duplicated."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest

from poselift import Lifter
from tests.service.rpc.rpckit import ROOT, Nginx, Replica, compose_file, metric, nginx_binary
from tests.service.testkit import TOLERANCE_MM, RedisServer

SEGMENT, KILL_AFTER = 12, 40  # a 146-frame val clip; the kill comes after this many poses


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stream_client", ROOT / "examples" / "stream_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def topology(redis_server: RedisServer) -> Iterator[tuple[list[Replica], Nginx]]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (make setup installs it where apt-get can)")
    count = int(compose_file()["services"]["lifter"]["deploy"]["replicas"])
    replicas = [Replica(redis_server.url) for _ in range(count)]
    try:
        for replica in replicas:
            replica.wait_ready()
        nginx = Nginx(binary, [(r.http_port, r.grpc_port) for r in replicas])
        checked = nginx.check()
        assert checked.returncode == 0, checked.stderr
        with nginx:
            yield replicas, nginx
    finally:
        for replica in replicas:
            replica.stop()


def run_client(target: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-u", str(ROOT / "examples" / "stream_client.py"), "--target", target,
               "--val", str(SEGMENT), "--out", str(out), "--reply-timeout", "3", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_failover_sigkill_mid_stream_resumes_on_the_other_replica(
    topology: tuple[list[Replica], Nginx], lifter: Lifter, tmp_path: Path
) -> None:
    replicas, nginx = topology
    lb_grpc = f"127.0.0.1:{nginx.grpc_port}"
    client = run_client(lb_grpc, tmp_path / "failover.npz", "--rate", "60")
    assert client.stdout is not None
    killed: Replica | None = None
    for line in client.stdout:
        if line.startswith("pose ") and int(line.split("seq=")[1].split()[0]) >= KILL_AFTER - 1:
            serving = [r for r in replicas if metric(r.url, "poselift_open_streams") == 1.0]
            assert len(serving) == 1, [metric(r.url, "poselift_open_streams") for r in replicas]
            killed = serving[0]
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait(10)
            break
    rest, errors = client.communicate(timeout=60)
    assert client.returncode == 0, errors
    assert killed is not None, "the stream ended before the kill"
    assert "resuming session" in errors and "summary:" in rest, errors

    uninterrupted = run_client(lb_grpc, tmp_path / "uninterrupted.npz", "--rate", "0", "--quiet")
    _, errors = uninterrupted.communicate(timeout=60)
    assert uninterrupted.returncode == 0, errors

    clip = load_example().val_clip(SEGMENT)
    total = len(clip.keypoints_px)
    failover, reference = np.load(tmp_path / "failover.npz"), np.load(tmp_path / "uninterrupted.npz")
    np.testing.assert_array_equal(failover["seqs"], np.arange(total))  # every frame once, in order
    np.testing.assert_allclose(failover["poses"], reference["poses"], rtol=0, atol=TOLERANCE_MM)
    offline = lifter.lift(clip.keypoints_px.astype(np.float64), clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(failover["poses"], offline, rtol=0, atol=TOLERANCE_MM)

    session_id = str(failover["session_id"])
    with httpx.Client(base_url=f"http://127.0.0.1:{nginx.http_port}", timeout=10) as http:
        status = http.get(f"/v1/sessions/{session_id}").json()  # REST through the balancer too
    assert status["frames_seen"] == total and status["last_seq"] == total - 1  # none entered twice
    survivor = next(r for r in replicas if r is not killed)
    assert metric(survivor.url, 'poselift_stream_frames_total{outcome="pose"}') is not None
