"""The image built from the project's Dockerfile and run with podman, then docker-compose.yml's topology.

The Dockerfile is built unchanged (only build arguments differ) on local stand-ins of its base image
(deploy/podman/make-bases.sh), because this machine reaches no container registry. A container of it must be
ready on both transports (REST /readyz, gRPC health) and pass its own HEALTHCHECK; then the compose file runs
under podman-compose (Redis, two replicas, nginx), a val clip streams through the balancer, the replica
serving it is SIGKILLed mid-stream, and the resumed poses must equal offline lifting.

Only under `make image-test` (marker `container`): a cold build takes minutes. Skipped, saying why, where
podman is missing, not root, or unusable. Prints the build time and image size; POSELIFT_CONTAINER_REPORT=FILE
also writes them as JSON; POSELIFT_CONTAINER_NO_CACHE=1 builds without podman's layer cache;
POSELIFT_CONTAINER_IMAGE=NAME tests that image instead of building one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from poselift import Lifter, load_lifter
from service.healthcheck import check_grpc
from tests.deploy import podkit
from tests.deploy.podkit import Built, ComposeProject, podman
from tests.service.rpc.rpckit import compose_file, interpolate
from tests.service.rpc.test_failover import load_example
from tests.service.testkit import TOLERANCE_MM, free_port

pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]
SEGMENT, KILL_AFTER = 12, 30  # a 146-frame val clip sent at 15 fps; the kill comes after this many poses
READY_S = 300  # a replica loads its model in seconds, but the machine may be busy


@pytest.fixture(scope="module")
def image() -> Built:
    podkit.require_podman()
    podkit.make_bases()
    if given := os.environ.get("POSELIFT_CONTAINER_IMAGE"):  # an image built before: test it, build nothing
        size = int(podman("image", "inspect", "--format", "{{.Size}}", given).stdout.strip())
        return Built(given, 0.0, size)
    built = podkit.build_image(no_cache=os.environ.get("POSELIFT_CONTAINER_NO_CACHE") == "1")
    summary = {"image": built.image, "build_s": round(built.seconds, 1), "size_mb": built.size_bytes / 1e6}
    print(f"\nimage {built.image}: built in {built.seconds:.1f} s, {built.size_bytes / 1e6:.0f} MB")
    if report := os.environ.get("POSELIFT_CONTAINER_REPORT"):
        Path(report).write_text(json.dumps(summary, indent=2) + "\n")
    return built


@pytest.fixture(scope="module")
def checkpoint_lifter() -> Lifter:
    """The compose file's checkpoint (the image ships the same weights as this tree), on CPU, eager: no ONNX
    export here (the replicas run ONNX Runtime; the two agree far within TOLERANCE_MM)."""
    name = interpolate(str(compose_file()["services"]["lifter"]["environment"]["POSELIFT_CHECKPOINT"]))
    return load_lifter(name, device="cpu", backend="torch")


def test_container_image_ready_on_both_transports(image: Built, checkpoint_lifter: Lifter) -> None:
    http_port, grpc_port = free_port(), free_port()
    name = f"poselift-ct-single-{os.getpid()}"
    podman("run", "-d", "--name", name, "-p", f"{http_port}:8000", "-p", f"{grpc_port}:50051", image.image)
    try:
        podkit.wait_ready(http_port, grpc_port, READY_S, [name])
        assert (problem := podkit.healthy(name, READY_S)) is None, problem  # the image's HEALTHCHECK
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"  # not root
        clip = load_example().val_clip(SEGMENT, frames=60)
        body = {"width": clip.width, "height": clip.height, "fps": clip.fps, "layout": "h36m17"}
        body["keypoints"] = clip.keypoints_px.tolist()
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as http:
            response = http.post("/v1/lift", json=body)
        assert response.status_code == 200, response.text
        offline = checkpoint_lifter.lift(
            clip.keypoints_px.astype(np.float64), clip.width, clip.height, clip.fps
        )
        np.testing.assert_allclose(response.json()["poses"], offline, rtol=0, atol=TOLERANCE_MM)
        podman("stop", "-t", "20", name, timeout=60)  # SIGTERM drains and exits within the grace period
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, podkit.logs([name])
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture()
def project(image: Built) -> Iterator[tuple[ComposeProject, int, int]]:
    """docker-compose.yml up under podman-compose on the test image and stand-ins; waits for readiness by
    polling (podman 4.3 ignores `condition: service_healthy` and, without systemd, runs no healthchecks)."""
    binary = podkit.compose_binary()
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSELIFT_")}
    env.update(
        POSELIFT_IMAGE=image.image,
        POSELIFT_REDIS_IMAGE=podkit.REDIS_IMAGE,
        POSELIFT_NGINX_IMAGE=podkit.NGINX_IMAGE,
        POSELIFT_HTTP_PORT=str(http_port),
        POSELIFT_GRPC_PORT=str(grpc_port),
    )
    project = ComposeProject(binary, f"poselift-ct-{os.getpid()}", env)
    try:
        project.compose("up", "-d", "--no-build")
        replicas = project.containers("lifter")
        count = int(compose_file()["services"]["lifter"]["deploy"]["replicas"])
        assert len(replicas) == count, replicas
        everything = [*project.containers("redis"), *replicas, *project.containers("balancer")]
        podkit.wait_ready(http_port, grpc_port, READY_S, everything)
        for replica in replicas:  # each replica ready, by the image's own HEALTHCHECK
            assert (problem := podkit.healthy(replica, READY_S)) is None, problem
        yield project, http_port, grpc_port
    finally:
        project.down()


def test_container_compose_stream_survives_a_replica_kill(
    project: tuple[ComposeProject, int, int], checkpoint_lifter: Lifter, tmp_path: Path
) -> None:
    compose, http_port, grpc_port = project
    replicas = compose.containers("lifter")
    assert check_grpc(grpc_port) is None  # gRPC health through nginx
    out = tmp_path / "failover.npz"
    command = [sys.executable, "-u", str(podkit.ROOT / "examples" / "stream_client.py"),
               "--target", f"127.0.0.1:{grpc_port}", "--val", str(SEGMENT), "--out", str(out),
               "--reply-timeout", "5", "--rate", "15"]  # fmt: skip
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert client.stdout is not None
    killed = None
    for line in client.stdout:
        if line.startswith("pose ") and int(line.split("seq=")[1].split()[0]) >= KILL_AFTER - 1:
            serving = [r for r in replicas if podkit.exec_metric(r, "poselift_open_streams") == 1.0]
            assert len(serving) == 1, [podkit.exec_metric(r, "poselift_open_streams") for r in replicas]
            killed = serving[0]
            podman("kill", "--signal", str(int(signal.SIGKILL)), killed)
            break
    rest, errors = client.communicate(timeout=300)
    assert client.returncode == 0, errors
    assert killed is not None, "the stream ended before the kill"
    assert "resuming session" in errors and "summary:" in rest, errors

    clip = load_example().val_clip(SEGMENT)
    total = len(clip.keypoints_px)
    streamed = np.load(out)
    np.testing.assert_array_equal(streamed["seqs"], np.arange(total))  # every frame once, in order
    offline = checkpoint_lifter.lift(clip.keypoints_px.astype(np.float64), clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(streamed["poses"], offline, rtol=0, atol=TOLERANCE_MM)

    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:  # REST through nginx
        assert http.get("/readyz").status_code == 200
        status = http.get(f"/v1/sessions/{streamed['session_id']}").json()  # the session lives in Redis
    assert status["frames_seen"] == total and status["last_seq"] == total - 1  # none entered twice
    survivor = next(r for r in replicas if r != killed)  # it served the resumed stream
    assert (podkit.exec_metric(survivor, 'poselift_stream_frames_total{outcome="pose"}') or 0) > 0
