"""Helpers of the container test: podman with the project's containers.conf, the local stand-in images, the
loopback wheel index, the image build, podman-compose projects and what runs inside their containers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.healthcheck import check_grpc, check_rest

ROOT = Path(__file__).resolve().parents[2]
PODMAN_DIR = ROOT / "deploy" / "podman"
STANDIN = "localhost/poselift-standin"
BASE_IMAGE = f"{STANDIN}/python:3.11"
REDIS_IMAGE = f"{STANDIN}/redis:7"
NGINX_IMAGE = f"{STANDIN}/nginx:1"
TEST_IMAGE = "localhost/poselift:container-test"


def podman_env() -> dict[str, str]:
    """The environment every podman call runs in: the project's containers.conf unless one is chosen."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(PODMAN_DIR / "containers.conf"))
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def require_podman() -> None:
    """Skip, saying why, where podman cannot run the test: not installed, not root, `podman info` fails."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make image-test installs it as root where apt-get can)")
    if os.geteuid() != 0:
        pytest.skip("the container test runs podman as root (debootstrap, rootful networks)")
    info = podman("info", "--format", "json", check=False)
    if info.returncode != 0:
        pytest.skip(f"podman is not usable here: {info.stderr.strip()[-500:]}")


def make_bases() -> None:
    """The stand-in base images (deploy/podman/make-bases.sh; cached after the first run)."""
    done = subprocess.run(
        ["sh", str(PODMAN_DIR / "make-bases.sh")],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def compose_binary() -> str:
    """podman-compose (>= 1.1) of this venv, else the one on PATH; skip if neither is recent enough."""
    venv = Path(sys.executable).with_name("podman-compose")
    binary = str(venv) if venv.exists() else shutil.which("podman-compose")
    if binary is None:
        pytest.skip("podman-compose is not installed (pip install 'podman-compose>=1.1', in the dev extra)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, env=podman_env())
    found = re.search(r"podman-compose version (\d+)\.(\d+)", version.stdout)
    if found is None or (int(found.group(1)), int(found.group(2))) < (1, 1):
        pytest.skip(f"podman-compose >= 1.1 is needed (1.0.x rejects the compose file): {version.stdout!r}")
    return binary


def local_torch_wheel() -> Path | None:
    """A torch wheel in the host's PIP_FIND_LINKS directories (where the PyTorch index is unreachable)."""
    for directory in os.environ.get("PIP_FIND_LINKS", "").split():
        path = Path(directory.removeprefix("file://"))
        wheels = sorted(path.glob("torch-*-cp311-*.whl")) if path.is_dir() else []
        if wheels:
            return wheels[-1]
    return None


class WheelIndex:
    """deploy/podman/wheel_index.py on a free loopback port: local wheels, PyPI for the rest."""

    def __init__(self, directory: Path):
        self.process = subprocess.Popen(
            [sys.executable, str(PODMAN_DIR / "wheel_index.py"), str(directory)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Built:
    image: str
    seconds: float
    size_bytes: int


def build_image(tag: str = TEST_IMAGE, no_cache: bool = False) -> Built:
    """The project's Dockerfile, unchanged, on the stand-in base; only build arguments differ."""
    # Docker's image format: OCI's has no HEALTHCHECK, and podman would drop the Dockerfile's.
    args = [
        "build",
        "--format=docker",
        "--network=host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        tag,
    ]
    if no_cache:
        args.append("--no-cache")
    wheel = local_torch_wheel()
    index = WheelIndex(wheel.parent) if wheel is not None else None
    try:
        if index is not None:
            args += ["--build-arg", f"TORCH_INDEX_URL={index.url}"]
        started = time.monotonic()
        podman(*args, str(ROOT), timeout=3600)
        seconds = time.monotonic() - started
    finally:
        if index is not None:
            index.close()
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return Built(tag, seconds, size)


def wait_ready(http_port: int, grpc_port: int, timeout_s: float, containers: Sequence[str]) -> None:
    """Until REST /readyz and the gRPC health service on loopback both say ready; fails at once, with their
    logs, when one of `containers` that has no restart policy exited."""
    deadline = time.monotonic() + timeout_s
    format_ = "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}"
    while problems := [p for p in (check_rest(http_port), check_grpc(grpc_port)) if p]:
        states = {
            c: podman("inspect", "--format", format_, c, check=False).stdout.split() for c in containers
        }
        dead = [c for c, s in states.items() if s[:1] in (["exited"], ["stopped"]) and s[1:] in ([], ["no"])]
        if dead or time.monotonic() > deadline:
            raise AssertionError(
                f"not ready in {timeout_s} s: {problems}, containers {states}\n{logs(containers)}"
            )
        time.sleep(1.0)


def healthy(container: str, timeout_s: float) -> str | None:
    """None once the container's own healthcheck passes (`podman healthcheck run`, repeated as the
    healthcheck's retries would: on a busy machine its 5-s timeout can expire), else its last error."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done = podman("healthcheck", "run", container, check=False, timeout=120)
            if done.returncode == 0:
                return None
            last = (done.stdout + done.stderr).strip()
        except subprocess.TimeoutExpired:
            last = "podman healthcheck run took over 120 s"
        if time.monotonic() > deadline:
            return f"{container}: {last}\n{logs([container])}"
        time.sleep(2.0)


def logs(containers: Sequence[str]) -> str:
    """The last lines each container printed."""
    parts = []
    for container in containers:
        done = podman("logs", "--tail", "40", container, check=False)
        parts.append(f"--- {container}\n{(done.stdout + done.stderr)[-3000:]}")
    return "\n".join(parts)


def exec_metric(container: str, name: str) -> float | None:
    """One sample of a replica's /metrics, read inside its container (replicas publish no ports)."""
    url = "http://127.0.0.1:8000/metrics"
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=3).read().decode())"
    done = podman("exec", container, "python", "-c", fetch, check=False, timeout=60)
    match = re.search(rf"^{re.escape(name)} (\S+)$", done.stdout, flags=re.MULTILINE)
    return float(match.group(1)) if match else None


class ComposeProject:
    """docker-compose.yml under podman-compose as project `name`, with the given environment."""

    def __init__(self, binary: str, name: str, env: dict[str, str]):
        self.binary, self.name = binary, name
        self.env = {**podman_env(), **env}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [self.binary, "-p", self.name, "-f", str(ROOT / "docker-compose.yml"), *args]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def containers(self, service: str) -> list[str]:
        listed = podman(
            "ps", "-a", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}",
        )  # fmt: skip
        return sorted(listed.stdout.split())

    def down(self) -> None:
        """Everything of the project removed (no systemd here: `podman pod rm -f`, then the rest)."""
        label = f"label=io.podman.compose.project={self.name}"
        for pod in podman("pod", "ps", "-q", "--filter", f"name=pod_{self.name}", check=False).stdout.split():
            podman("pod", "rm", "-f", pod, check=False)
        for container in podman("ps", "-aq", "--filter", label, check=False).stdout.split():
            podman("rm", "-f", "-t", "0", container, check=False)
        for volume in podman("volume", "ls", "-q", "--filter", label, check=False).stdout.split():
            podman("volume", "rm", "-f", volume, check=False)
        for network in json.loads(podman("network", "ls", "--format", "json", check=False).stdout or "[]"):
            if network.get("labels", {}).get("io.podman.compose.project") == self.name:
                podman("network", "rm", "-f", network["name"], check=False)
