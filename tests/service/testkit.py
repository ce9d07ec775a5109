"""Helpers of the service tests: a throw-away redis-server, a live uvicorn server, a val clip in pixels.

The checkpoint is `POSELIFT_TEST_CHECKPOINT` (default: the shipped default "tcn"); any real checkpoint works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from poselift import Lifter
from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera
from service.api import create_app
from service.config import Settings

CHECKPOINT = os.environ.get("POSELIFT_TEST_CHECKPOINT", "tcn")
VAL_DATA = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"
WIDTH, HEIGHT, FPS = 1920, 1080, 30.0
# Poses are float32 through a recurrent network, and ONNX Runtime's kernels round differently for different
# batch sizes, so the same window lifted in another batch differs by up to ~8e-4 mm (seen in the soak). A
# wrong history or a mixed-up session moves poses by millimetres; 0.01 mm tells the two apart with margin.
TOLERANCE_MM = 1e-2


def free_port() -> int:
    return distinct_free_ports(1)[0]


def distinct_free_ports(count: int) -> list[int]:
    """`count` free loopback ports, all different: each held bound until all are chosen (ports taken one
    after another can repeat once released, as a cluster's twelve once did)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class RedisServer:
    """A throw-away redis-server (no persistence) on a free loopback port; can be stopped and restarted."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="poselift-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)


class _IsolatedSettings(Settings):
    """Settings from arguments only: the environment the tests run in cannot leak in."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: the test checkpoint on CPU, in-process store, no keys, plus `overrides`."""
    values: dict[str, Any] = {"checkpoint": CHECKPOINT, "device": "cpu"}
    values.update(overrides)
    return _IsolatedSettings(**values)


class LiveServer:
    """A uvicorn server for `app` in a thread on a free loopback port (real HTTP)."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.sock = socket.socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections;
        self.sock.bind(("127.0.0.1", 0))  # without it a keep-alive answer waits 40 ms for a delayed ACK
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@contextmanager
def serve(
    request: pytest.FixtureRequest, store_kind: str, lifter: Lifter, **settings: Any
) -> Iterator[LiveServer]:
    """A live server (real HTTP on loopback) on the memory store or on the suite's redis-server."""
    redis_url = request.getfixturevalue("redis_server").url if store_kind == "redis" else ""
    with LiveServer(create_app(make_settings(redis_url=redis_url, **settings), lifter)) as server:
        yield server


@dataclass(frozen=True)
class Clip:
    """A 2D keypoint sequence in pixels, as a client would send it."""

    keypoints_px: np.ndarray  # (T, 17, 2)
    width: int = WIDTH
    height: int = HEIGHT
    fps: float = FPS

    def camera(self) -> dict[str, Any]:
        return {"layout": "h36m17", "width": self.width, "height": self.height, "fps": self.fps}


def project_segment(
    segment: int, start: int = 0, frames: int | None = None, azimuth_deg: float = 30.0
) -> Clip:
    """Segment `segment` of the val split seen by a pinhole camera 4.5 m away, 1.4 m high, f = 1100 px."""
    data = np.load(VAL_DATA)
    first, length = int(data["clip_starts"][segment]), int(data["clip_lengths"][segment])
    stop = length if frames is None else min(length, start + frames)
    positions = data["positions"][first + start : first + stop].astype(
        np.float64
    )  # (T, 17, 3) world mm, Z up
    target = positions[:, 0].mean(axis=0)
    angle = np.radians(azimuth_deg)
    camera_pos = target + 4500.0 * np.array([np.sin(angle), -np.cos(angle), 0.0])
    camera_pos[2] = 1400.0
    rotation = look_at_rotation(camera_pos, target)
    points_cam = world_to_camera(positions, rotation, camera_pos)  # (T, 17, 3)
    return Clip(project_to_2d(points_cam, 1100.0, (WIDTH / 2, HEIGHT / 2)))


def lift_rest(client: httpx.Client, clip: Clip) -> np.ndarray:
    """The clip through POST /v1/lift -> (T, 17, 3)."""
    response = client.post("/v1/lift", json={**clip.camera(), "keypoints": clip.keypoints_px.tolist()})
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["poses"])


def open_session(client: httpx.Client, clip: Clip) -> str:
    response = client.post("/v1/sessions", json=clip.camera())
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def frames_body(clip: Clip, seqs: list[int], indices: range | list[int]) -> dict[str, Any]:
    """A frames batch: frame `indices` of the clip sent with seqs `seqs[i]`."""
    return {"frames": [{"seq": seqs[i], "keypoints": clip.keypoints_px[i].tolist()} for i in indices]}


def push_in_batches(
    client: httpx.Client,
    clip: Clip,
    batch: int,
    seqs: list[int] | None = None,
    session_id: str | None = None,
    start: int = 0,
    stop: int | None = None,
) -> tuple[str, np.ndarray]:
    """Frames start..stop of the clip pushed through a session `batch` frames at a time -> (id, poses)."""
    seqs = list(range(len(clip.keypoints_px))) if seqs is None else seqs
    session_id = session_id or open_session(client, clip)
    stop = len(clip.keypoints_px) if stop is None else stop
    poses = []
    for first in range(start, stop, batch):
        body = frames_body(clip, seqs, range(first, min(first + batch, stop)))
        response = client.post(f"/v1/sessions/{session_id}/frames", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()["poses"]
        assert [p["seq"] for p in answer] == [f["seq"] for f in body["frames"]]
        poses += [p["joints"] for p in answer]
    return session_id, np.asarray(poses)
