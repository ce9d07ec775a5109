"""Helpers of the gRPC tests: REST and gRPC over one core in a thread, `poselift serve` replicas as processes,
nginx on loopback with the deploy config, and message builders."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
import yaml
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from service.api import create_app
from service.config import Settings
from service.healthcheck import check_grpc, check_rest
from service.lifting import LiftingCore, serving_core
from service.rpc.server import RpcServer
from tests.service.testkit import CHECKPOINT, Clip, free_port

ROOT = Path(__file__).resolve().parents[3]
J = 17


class RpcLive:
    """REST (uvicorn) and gRPC over one lifting core, as `poselift serve` runs them, in a thread's loop."""

    def __init__(self, settings: Settings, lifter: Lifter):
        self.settings = settings
        self.lifter = lifter
        self.sock = socket.socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.grpc_port = 0
        self.core: LiftingCore | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving_core(self.settings, self.lifter) as core:
            self.core = core
            rpc = RpcServer(core)
            self.grpc_port = await rpc.start("127.0.0.1", 0)
            config = uvicorn.Config(create_app(self.settings, core=core), log_level="warning", lifespan="on")
            http = uvicorn.Server(config)
            serving = asyncio.create_task(http.serve(sockets=[self.sock]))
            while not http.started:
                await asyncio.sleep(0.01)
            self._ready.set()
            await self._stop.wait()
            http.should_exit = True
            await rpc.stop(2.0)
            await serving

    def __enter__(self) -> RpcLive:
        self.thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the test server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)
        self.sock.close()


def camera(clip: Clip, **changes: Any) -> pb.Camera:
    values: dict[str, Any] = {"width": clip.width, "height": clip.height, "fps": clip.fps}
    values["layout"] = pb.LAYOUT_H36M17
    values.update(changes)
    return pb.Camera(**values)


def lift_request(clip: Clip, frames: int | None = None, **changes: Any) -> pb.LiftRequest:
    """A Lift request for the clip's first `frames` frames; `changes` replace fields."""
    kp = clip.keypoints_px[:frames]
    values: dict[str, Any] = {
        "camera": camera(clip),
        "num_frames": len(kp),
        "keypoints": np.asarray(kp, np.float32).reshape(-1).tolist(),
    }
    values.update(changes)
    return pb.LiftRequest(**values)


def frame(clip: Clip, index: int, seq: int | None = None, **changes: Any) -> pb.StreamLiftRequest:
    values: dict[str, Any] = {
        "seq": index if seq is None else seq,
        "keypoints": np.asarray(clip.keypoints_px[index], np.float32).reshape(-1).tolist(),
    }
    values.update(changes)
    return pb.StreamLiftRequest(frame=pb.Frame(**values))


def open_request(clip: Clip, **changes: Any) -> pb.StreamLiftRequest:
    return pb.StreamLiftRequest(open=camera(clip, **changes))


def resume_request(session_id: str) -> pb.StreamLiftRequest:
    return pb.StreamLiftRequest(resume_session_id=session_id)


def stream(
    stub: pb_grpc.PoseLifterStub,
    requests: Sequence[pb.StreamLiftRequest],
    metadata: Sequence[tuple[str, str]] | None = None,
) -> list[pb.StreamLiftResponse]:
    """Send `requests` on one StreamLift, return every reply (raises grpc.RpcError on a non-OK status)."""
    return list(stub.StreamLift(iter(requests), metadata=metadata, timeout=60))


def poses_of(replies: Iterable[pb.StreamLiftResponse]) -> tuple[list[int], np.ndarray]:
    """The seqs and (N, 17, 3) poses of the pose replies."""
    seqs, poses = [], []
    for reply in replies:
        if reply.WhichOneof("msg") == "pose":
            seqs.append(reply.pose.seq)
            poses.append(np.asarray(reply.pose.joints).reshape(J, 3))
    return seqs, np.asarray(poses).reshape(-1, J, 3)


def offline(lifter: Lifter, clip: Clip, indices: Sequence[int] | None = None) -> np.ndarray:
    """`Lifter.lift` of the clip's frames (float32 pixels, as gRPC carries them)."""
    kp = np.asarray(clip.keypoints_px, np.float32)
    kp = kp if indices is None else kp[list(indices)]
    return lifter.lift(kp.astype(np.float64), clip.width, clip.height, clip.fps)


# --- the deployment's topology on loopback -------------------------------------------------------------


def compose_file() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with an empty environment: the defaults."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def image_command() -> list[str]:
    """The Dockerfile's CMD (exec form)."""
    cmd = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    return list(json.loads(cmd[-1].removeprefix("CMD ")))


def replica_env(redis_url: str, http_port: int, grpc_port: int) -> dict[str, str]:
    """The compose file's lifter environment, with what differs on loopback (Redis, ports, checkpoint)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSELIFT_")}
    env.update(
        {k: interpolate(str(v)) for k, v in compose_file()["services"]["lifter"]["environment"].items()}
    )
    env.update(
        POSELIFT_REDIS_URL=redis_url,
        POSELIFT_HOST="127.0.0.1",
        POSELIFT_HTTP_PORT=str(http_port),
        POSELIFT_GRPC_PORT=str(grpc_port),
        POSELIFT_CHECKPOINT=CHECKPOINT,
        POSELIFT_DEVICE="cpu",
        POSELIFT_TORCH_THREADS="1",
        POSELIFT_WORKERS="1",  # compose's "auto" is one per CPU; a test replica is one process, as before
    )
    return env


class Replica:
    """`poselift serve` as a process, started exactly as the image's command."""

    def __init__(self, redis_url: str = "", **env: str):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.env = replica_env(redis_url, self.http_port, self.grpc_port)
        self.env.update(env)
        fd, log = tempfile.mkstemp(prefix="poselift-replica-", suffix=".log")
        self.log = Path(log)
        command = image_command()
        command[0] = str(Path(sys.executable).with_name(command[0]))  # the venv's console script
        self.process = subprocess.Popen(command, env=self.env, stdout=fd, stderr=subprocess.STDOUT)
        os.close(fd)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while check_rest(self.http_port) or check_grpc(self.grpc_port):
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica not ready in {timeout_s} s:\n{self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.log.unlink(missing_ok=True)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def loopback_nginx_conf(http_port: int, grpc_port: int, upstreams: Sequence[tuple[int, int]]) -> str:
    """deploy/nginx.conf with only the addresses changed: its listen ports, and `lifter` -> the replicas'
    (HTTP port, gRPC port) on loopback."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    swaps = {
        r"^(\s*)listen 8000;": rf"\g<1>listen 127.0.0.1:{http_port};",
        r"^(\s*)listen 50051 http2;": rf"\g<1>listen 127.0.0.1:{grpc_port} http2;",
        r"^(\s*)server lifter:8000( .*;)$": "\n".join(
            rf"\g<1>server 127.0.0.1:{http}\g<2>" for http, _ in upstreams
        ),
        r"^(\s*)server lifter:50051( .*;)$": "\n".join(
            rf"\g<1>server 127.0.0.1:{grpc}\g<2>" for _, grpc in upstreams
        ),
    }
    for pattern, replacement in swaps.items():
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"deploy/nginx.conf no longer has exactly one line matching {pattern!r}"
    return text


class Nginx:
    """nginx with the deploy config on loopback, in the foreground, prefix in a temporary folder."""

    def __init__(self, binary: str, upstreams: Sequence[tuple[int, int]]):
        self.binary = binary
        self.http_port, self.grpc_port = free_port(), free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="poselift-nginx-"))
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(loopback_nginx_conf(self.http_port, self.grpc_port, upstreams))
        self.process: subprocess.Popen[bytes] | None = None

    def args(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-e", "stderr", *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t`: the balancer's own check of the config."""
        return subprocess.run(self.args("-t"), capture_output=True, text=True, timeout=30)

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(self.args("-g", "daemon off;"), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def metric(url: str, name: str) -> float | None:
    """One sample of a replica's /metrics (None if absent or the replica is unreachable)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else None
