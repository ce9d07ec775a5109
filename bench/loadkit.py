"""What the load bench runs and measures besides the clients: a throw-away redis-server, one `poselift serve`
process, process CPU and I/O counters from /proc, the server's /metrics, and a clip of the validation split.

Linux only (/proc). Nothing here touches Redis on 6379: the bench's redis-server takes a free port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera

ROOT = Path(__file__).resolve().parents[1]
VAL_DATA = ROOT / "data" / "mocap" / "cmu_h36m17_val.npz"
WIDTH, HEIGHT = 1920, 1080
SESSION_PATTERN = "poselift:session:*"  # service/sessions.py KEY_PREFIX
INDEX_KEY = "poselift:sessions"  # service/sessions.py INDEX_KEY
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on loopback now (never 6379, where a production Redis may run)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 6379:
            return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process `pid` (all its threads) has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()  # after "pid (comm)": state is field 3 of proc(5)
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime: fields 14 and 15


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of `pid` and of its live descendants (a `poselift serve` supervisor's workers)."""
    total = cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:
        return total
    for child in children:
        with contextlib.suppress(OSError, ValueError):  # it exited meanwhile
            total += tree_cpu_seconds(child)
    return total


def write_syscalls(pid: int) -> int:
    """write(2)-family calls the process `pid` has made so far (/proc/<pid>/io `syscw`)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))


@dataclass(frozen=True)
class Clip:
    """2D keypoints as a client sends them: (T, 17, 2) float32 pixels, h36m17 order, of a WIDTH x HEIGHT
    camera at `fps`."""

    keypoints_px: np.ndarray
    fps: float
    width: int = WIDTH
    height: int = HEIGHT


def val_clip(frames: int, data_path: Path = VAL_DATA) -> Clip:
    """`frames` frames of the validation split's motion seen by a 1920x1080 pinhole camera (f = 1100 px),
    4.5 m away and 1.4 m high at 30° azimuth, one camera per segment (as tests/service/testkit.py), the
    segments one after the other and repeated until `frames` (the seams jump; speed does not care)."""
    data = np.load(data_path)
    parts = []
    for first, length in zip(data["clip_starts"], data["clip_lengths"], strict=True):
        positions = data["positions"][first : first + length].astype(np.float64)  # (T, 17, 3) world mm
        target = positions[:, 0].mean(axis=0)
        camera_pos = target + 4500.0 * np.array([np.sin(np.radians(30)), -np.cos(np.radians(30)), 0.0])
        camera_pos[2] = 1400.0
        points = world_to_camera(positions, look_at_rotation(camera_pos, target), camera_pos)  # (T, 17, 3)
        parts.append(project_to_2d(points, 1100.0, (WIDTH / 2, HEIGHT / 2)))
    whole = np.concatenate(parts).astype(np.float32)  # (1632, 17, 2) px
    return Clip(np.resize(whole, (frames, *whole.shape[1:])), float(data["fps"]))


def percentiles_ms(samples_ms: np.ndarray) -> tuple[float, float]:
    """(p50, p99) of `samples_ms` in ms; NaN for no samples."""
    if len(samples_ms) == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(samples_ms, [50, 99])
    return float(p50), float(p99)


@dataclass(frozen=True)
class RedisSnapshot:
    """Counters of the redis-server at one instant."""

    commands: int  # INFO stats total_commands_processed (commands inside MULTI and Lua scripts included)
    calls: dict[str, int]  # INFO commandstats: command -> calls
    writes: int  # write syscalls of the redis-server: about one per answered request or pipeline
    cpu_s: float


class RedisServer:
    """A throw-away redis-server (no persistence) on a free loopback port, never 6379; a context manager."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="poselift-bench-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def snapshot(self) -> RedisSnapshot:
        stats: dict[str, Any] = self.client.info("stats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in self.client.info("commandstats").items()
        }
        return RedisSnapshot(
            int(stats["total_commands_processed"]),
            calls,
            write_syscalls(self.process.pid),
            cpu_seconds(self.process.pid),
        )

    def session_bytes(self, sample: int = 64) -> tuple[float, float, int, int]:
        """(mean `MEMORY USAGE` of up to `sample` session hashes, the index's bytes per session, sessions
        indexed, how many of the sampled sessions had seen fewer frames than the model's window), bytes;
        (NaN, NaN, 0, 0) when there are no sessions.

        A session's hash grows with its 2D history until it holds the window's frames (W - 1 for a camera
        at the model's rate), so only sessions that saw at least W frames show the full size.
        """
        keys = []
        for key in self.client.scan_iter(match=SESSION_PATTERN, count=1000):
            keys.append(key)
            if len(keys) >= sample:
                break
        sessions = int(self.client.zcard(INDEX_KEY))
        if not keys or not sessions:
            return float("nan"), float("nan"), 0, 0
        per_key = [int(self.client.memory_usage(key, samples=0) or 0) for key in keys]
        index = int(self.client.memory_usage(INDEX_KEY, samples=0) or 0)
        short = 0
        for key in keys:
            seen, window = self.client.hmget(key, ["frames_seen", "window"])
            short += int(seen or 0) < int(window or 0)
        return float(np.mean(per_key)), index / sessions, sessions, short

    def flush(self) -> None:
        self.client.flushall()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` whose labels include `labels` (0 if none)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    pattern = re.compile(rf"^{re.escape(name)}(\{{.*\}})?$")
    return sum(
        value
        for key, value in samples.items()
        if pattern.match(key) and all(label in key for label in wanted)
    )


class Server:
    """`poselift serve` as a process on free loopback ports; a context manager that stops it (SIGTERM).

    Its environment is this process's, the `POSELIFT_*` values of `settings` (field name -> value) on top,
    then what the bench fixes: the Redis URL, loopback ports, no API keys.
    """

    def __init__(self, settings: dict[str, str], redis_url: str):
        self.http_port, self.grpc_port = free_port(), free_port()
        env = dict(os.environ)
        env.setdefault("POSELIFT_LOG_LEVEL", "warning")
        env.update({f"POSELIFT_{name.upper()}": value for name, value in settings.items()})
        env.update(
            POSELIFT_REDIS_URL=redis_url,
            POSELIFT_HOST="127.0.0.1",
            POSELIFT_HTTP_PORT=str(self.http_port),
            POSELIFT_GRPC_PORT=str(self.grpc_port),
            POSELIFT_API_KEYS="",
        )
        script = Path(sys.executable).with_name("poselift")
        command = [str(script), "serve"] if script.exists() else ["poselift", "serve"]
        fd, log = tempfile.mkstemp(prefix="poselift-bench-server-", suffix=".log")
        self.log = Path(log)
        self.process = subprocess.Popen(command, env=env, stdout=fd, stderr=subprocess.STDOUT)
        os.close(fd)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=10)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        """host:port of its gRPC server."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until REST /readyz and gRPC health both pass; RuntimeError with the log if it never does."""
        from service.healthcheck import check_grpc, check_rest  # grpc imported only where it is used

        deadline = time.monotonic() + timeout_s
        while check_rest(self.http_port) or check_grpc(self.grpc_port):
            if self.process.poll() is not None:
                raise RuntimeError(f"poselift serve exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"poselift serve not ready within {timeout_s} s:\n{self.output()}")
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.http.get("/metrics").text)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: drains within its 10 s grace
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.unlink(missing_ok=True)
