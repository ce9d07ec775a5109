"""deploy/gpu-offline/env.sh's check, run with its PYTHONPATH and PATH: every package of the kit imports from
SITE (not from an older copy the machine has, e.g. grpcio or protobuf), the project's server, client, bench
and test-kit modules import, the carried redis-server starts and answers, and `poselift` resolves as
bench.loadkit.Server runs it. Prints the versions the machine's own packages have. Exit 1 with the list of
problems if anything is off.

Usage: python3 deploy/gpu-offline/check.py SITE [--serve]
(--serve: also start one `poselift serve` on the CPU)
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROBLEMS: list[str] = []
# The machine's own packages this project uses (not carried): printed, not judged.
MACHINE = [
    "torch", "numpy", "safetensors", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnx-ir",
    "pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "httpx", "httpcore", "anyio", "h11", "click",
    "prometheus-client", "uvloop", "PyYAML", "scipy", "matplotlib", "imageio", "pillow", "schemathesis",
]  # fmt: skip
# Lower bounds on the machine's own packages, from the carried packages' Requires-Dist and the service's use.
MINIMUM = {
    "anyio": "4.1",  # fastapi 0.165 (starlette 1.10: 4.0)
    "click": "7.0",  # uvicorn 0.54
    "h11": "0.8",  # uvicorn 0.54
    "prometheus-client": "0.17",  # service/metrics.py: Gauge(multiprocess_mode="livemostrecent")
    "pytest": "8.0",
    "numpy": "1.26",  # pyproject
    "safetensors": "0.4",  # pyproject
    "attrs": "22.2.0",  # jsonschema, referencing
    "markupsafe": "2.1.1",
}
# The project's modules that must import (server, client stubs with their version checks, bench, test kits).
PROJECT = [
    "poselift_client", "poselift_client.stream", "poselift_client.gen.poselift.v1.lifter_pb2_grpc",
    "service.config", "service.api", "service.rpc.server", "service.cli", "service.workers",
    "service.healthcheck", "bench.loadkit", "bench.loadgen", "bench.load", "bench.model", "bench.gpu_check",
    "tests.service.testkit", "tests.service.clusterkit",
]  # fmt: skip


def problem(text: str) -> None:
    PROBLEMS.append(text)
    print(f"  PROBLEM: {text}", flush=True)


def top_level_names(dist: md.Distribution) -> set[str]:
    """Import names a distribution installs at the top of SITE (from its RECORD)."""
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("__pycache__", "..") or first.startswith("_"):
            continue
        if len(file.parts) == 1:
            if not first.endswith((".py", ".so")):
                continue
            first = first.split(".")[0]
        names.add(first)
    return names


def origin(module: object) -> str:
    file = getattr(module, "__file__", None)
    if file:
        return file
    path = list(getattr(module, "__path__", []))  # a namespace package
    return path[0] if path else "?"


def check_kit(site: Path) -> None:
    print(f"carried packages (from {site}):")
    dists = sorted(md.distributions(path=[str(site)]), key=lambda d: d.metadata["Name"].lower())
    if not dists:
        problem(f"nothing installed in {site}")
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        seen = md.version(name)  # what importlib.metadata finds first on sys.path
        if seen != version:
            problem(f"{name}: metadata finds {seen} before the carried {version}")
        for top in sorted(top_level_names(dist)):
            target = "google.protobuf" if top == "google" else top
            try:
                module = importlib.import_module(target)
            except Exception as error:
                problem(f"{name} {version}: import {target} failed: {type(error).__name__}: {error}")
                continue
            where = origin(module)
            if not Path(where).resolve().is_relative_to(site.resolve()):
                problem(f"{name} {version}: {target} imports from {where}, not from {site} (shadowed)")
            print(f"  {name} {version}: {target} ok")


def check_machine() -> None:
    found, missing = [], []
    for name in MACHINE:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            missing.append(name)
    from packaging.version import Version

    for name, least in MINIMUM.items():
        try:
            if Version(md.version(name)) < Version(least):
                problem(f"{name} {md.version(name)} is older than the {least} the server needs")
        except md.PackageNotFoundError:
            problem(f"{name} is not installed")
    print("machine's own packages: " + ", ".join(found))
    print("  (not installed: " + ", ".join(missing) + ")")
    try:
        import torch

        cuda = torch.cuda.is_available()
        print(f"  torch {torch.__version__}, CUDA {torch.version.cuda}, GPU available: {cuda}"
              + (f" ({torch.cuda.get_device_name()})" if cuda else ""))  # fmt: skip
    except Exception as error:
        problem(f"torch does not import: {error}")


def check_project() -> None:
    print("project modules:")
    for name in PROJECT:
        try:
            importlib.import_module(name)
        except Exception as error:
            problem(f"import {name} failed: {type(error).__name__}: {error}")
    import grpc
    from google.protobuf import __version__ as protobuf_version

    print(f"  all imported; grpc {grpc.__version__}, protobuf {protobuf_version}")


def check_redis() -> str | None:
    """The carried redis-server through bench.loadkit.RedisServer; returns its URL's server process check."""
    binary = shutil.which("redis-server")
    print(f"redis-server: {binary}")
    if binary is None:
        problem("redis-server is not on PATH")
        return None
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    if version.returncode:
        problem(f"redis-server --version failed ({version.returncode}): {version.stderr.strip()}")
        return None
    print(f"  {version.stdout.strip()}")
    try:
        import redis.utils

        from bench.loadkit import RedisServer

        with RedisServer() as server:
            snap = server.snapshot()
            comm = Path(f"/proc/{server.process.pid}/comm").read_text().strip()
            if comm != "redis-server":
                problem(f"the bench's redis pid runs {comm!r}, not redis-server (wrapper did not exec)")
            print(f"  started on port {server.port}, answered INFO ({snap.commands} commands), pid is "
                  f"{comm}; hiredis parser: {redis.utils.HIREDIS_AVAILABLE}")  # fmt: skip
    except Exception as error:
        problem(f"redis-server did not run under bench.loadkit.RedisServer: {type(error).__name__}: {error}")
    return binary


def check_poselift_command() -> None:
    own = Path(sys.executable).with_name("poselift")  # what bench.loadkit.Server runs if it exists
    command = str(own) if own.exists() else shutil.which("poselift")
    print(f"poselift command (as bench.loadkit.Server picks it): {command}")
    if command is None:
        problem("no `poselift` command on PATH (deploy/gpu-offline/bin)")
        return
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    if done.returncode or "serve" not in done.stdout:
        problem(f"`poselift --help` failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def check_serve() -> None:
    """One `poselift serve` on the CPU with sessions in the carried redis: ready, one /v1/lift."""
    from bench.loadkit import RedisServer, Server, val_clip

    started = time.monotonic()
    with RedisServer() as redis_server, Server({"device": "cpu"}, redis_server.url) as server:
        clip = val_clip(120)
        body = {"layout": "h36m17", "width": clip.width, "height": clip.height, "fps": clip.fps,
                "keypoints": clip.keypoints_px.tolist()}  # fmt: skip
        reply = server.http.post("/v1/lift", json=body, timeout=60)
        if reply.status_code != 200:
            problem(f"/v1/lift answered {reply.status_code}: {reply.text[:300]}")
        else:
            print(f"  poselift serve ready and lifted 120 frames in {time.monotonic() - started:.1f} s")
        from bench import loadgen  # one StreamLift session over gRPC, its state in the carried redis, ~1 s

        now = time.time()
        spec = loadgen.StreamSpec(server.target, clip, 1, 0, 1, 0.0, 0.3, now + 0.5, now + 1.5)
        result = loadgen.run_streams(spec)
        if result.problems.total or not result.poses:
            problem(f"StreamLift: {result.poses} poses, problems {result.problems.examples}")
        else:
            print(f"  StreamLift: {result.poses} poses, sessions in redis: {redis_server.session_bytes()[2]}")


def main() -> int:
    site = Path(sys.argv[1])
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    check_kit(site)
    check_machine()
    check_project()
    check_redis()
    check_poselift_command()
    if "--serve" in sys.argv[2:]:
        check_serve()
    if PROBLEMS:
        print(f"gpukit check: {len(PROBLEMS)} problem(s):\n  " + "\n  ".join(PROBLEMS), file=sys.stderr)
        return 1
    print("gpukit check: ok")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("POSELIFT_LOG_LEVEL", "warning")
    sys.exit(main())
