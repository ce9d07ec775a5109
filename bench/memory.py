"""Memory of one `poselift serve` replica per worker count: the supervisor's and each worker's RSS and PSS.

    python -m bench.memory [--workers 1,2] [--frames 200] [--set NAME=VALUE ...]

For each worker count it starts the server (sessions in a throw-away redis-server on a free port, never
6379), waits until it is ready, streams `--frames` frames through one StreamLift session per worker
(so every worker has run its model and served a session), then reads /proc of the server's processes:
RSS (resident pages, shared libraries counted in full by every process) and PSS (each shared page divided
among the processes that map it: what the processes add up to). Not a timing benchmark: it runs on a busy
machine too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
import numpy as np
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from bench.loadkit import RedisServer, Server, val_clip
from service.workers import WORKER_HEADER


def _kib(pid: int, field: str, path: str) -> int:
    with open(f"/proc/{pid}/{path}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def process_memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` in MiB."""
    return _kib(pid, "VmRSS", "status") / 1024, _kib(pid, "Pss", "smaps_rollup") / 1024


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def command(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        text = f.read().replace(b"\0", b" ").decode(errors="replace")
    return "worker" if "spawn_main" in text else "resource tracker" if "resource_tracker" in text else text


def stream(target: str, frames: int) -> str:
    """`frames` frames through one new StreamLift session on its own connection; the worker that served it."""
    clip = val_clip(frames)
    camera = pb.Camera(layout=pb.LAYOUT_H36M17, width=clip.width, height=clip.height, fps=clip.fps)
    requests = [pb.StreamLiftRequest(open=camera)] + [
        pb.StreamLiftRequest(frame=pb.Frame(seq=i, keypoints=np.asarray(kp, np.float32).reshape(-1).tolist()))
        for i, kp in enumerate(clip.keypoints_px)
    ]
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        call = pb_grpc.PoseLifterStub(channel).StreamLift(iter(requests), timeout=300)
        replies = list(call)
    assert sum(r.WhichOneof("msg") == "pose" for r in replies) == frames, "a frame was not answered"
    return str(dict(call.initial_metadata()).get(WORKER_HEADER, "1"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="POSELIFT_WORKERS values, one server each")
    p.add_argument("--frames", type=int, default=200, help="frames streamed per worker before measuring")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any server setting")
    args = p.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    print("| workers | process | RSS (MiB) | PSS (MiB) |\n|---|---|---|---|")
    with RedisServer() as redis:
        for workers in (int(n) for n in args.workers.split(",")):
            with Server({**settings, "workers": str(workers)}, redis.url) as server:
                served = {stream(server.target, args.frames)}
                while len(served) < workers:  # new connections until every worker has served a session
                    served.add(stream(server.target, args.frames))
                pids = [(server.pid, "supervisor" if workers > 1 else "server")]
                pids += [(pid, command(pid)) for pid in children(server.pid)]
                total = 0.0
                for pid, role in pids:
                    rss, pss = process_memory_mib(pid)
                    total += pss
                    print(f"| {workers} | {role} (pid {pid}) | {rss:,.0f} | {pss:,.0f} |")
                print(f"| {workers} | all | | {total:,.0f} |")
            redis.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
