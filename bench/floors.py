"""What no server can beat on this machine: a do-nothing gRPC echo and a Redis PING, beside the model alone.

Run: `python -m bench.floors [--out FILE]` (~1 minute, on an idle machine). It measures, with the load bench's
own client pattern (asyncio gRPC, one frame in flight per stream, 16 streams per channel):

- a gRPC bidirectional stream that echoes each ~200-byte message (a StreamLift frame's size) and does nothing
  else, paced at 30 fps and with 64 streams flat out, with the client's and the echo server's CPU per frame;
- a Redis PING every 1/30 s from redis.asyncio (a throw-away redis-server, never the one on 6379);
- the served model alone, as `bench.load` measures it (batch 64; batch 1 paced at 30 fps).

From these it derives two bounds that hold for any Python gRPC server driven by a Python client on the same
machine, whatever the server does per frame:

- frames/s at 64 flat-out streams: at most 2 cores / (client + echo server + model CPU per frame);
- a paced stream's p50: at least echo p50 + Redis round trip p50 + the model's paced pass, since a pose is
  answered only after the state that produced it is stored (docs/sessions.md).

docs/performance.md reads them against the serving targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from bench.loadkit import RedisServer, cpu_seconds, free_port
from bench.model import machine

SERVICE, METHOD = "floors.Echo", "Stream"
PAYLOAD = bytes(204)  # a StreamLift frame: 17 joints x (x, y, score) float32, about its encoded size
FPS = 30.0
STREAMS, STREAMS_PER_CHANNEL = 64, 16
CORES = os.cpu_count() or 1


def _p(samples: list[float], q: float) -> float:
    return sorted(samples)[int(q * (len(samples) - 1))]


async def _echo_server(port: int) -> None:
    async def stream(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _call(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(f"/{SERVICE}/{METHOD}")()


async def _echo_paced(target: str, frames: int) -> list[float]:
    """Round trips (ms) of one stream sending a frame every 1/FPS s."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = _call(channel)
        times = []
        for _ in range(frames + 10):
            started = time.perf_counter()
            await call.write(PAYLOAD)
            await call.read()
            times.append((time.perf_counter() - started) * 1e3)
            await asyncio.sleep(1 / FPS)
        await call.done_writing()
    return times[10:]


async def _echo_flat(target: str, seconds: float) -> tuple[int, float]:
    """Messages answered by STREAMS flat-out streams in `seconds`, and the wall time taken."""
    channels = [grpc.aio.insecure_channel(target) for _ in range(STREAMS // STREAMS_PER_CHANNEL)]
    count = 0
    warm_until = time.perf_counter() + 1.0
    stop = warm_until + seconds

    async def one(channel: grpc.aio.Channel) -> None:
        nonlocal count
        call = _call(channel)
        while (now := time.perf_counter()) < stop:
            await call.write(PAYLOAD)
            await call.read()
            count += now >= warm_until
        await call.done_writing()

    await asyncio.gather(*(one(channels[k % len(channels)]) for k in range(STREAMS)))
    for channel in channels:
        await channel.close()
    return count, seconds


async def _redis_paced(url: str, frames: int) -> list[float]:
    client = aioredis.Redis.from_url(url)
    await client.ping()
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        await client.ping()
        times.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(1 / FPS)
    await client.aclose()
    return times


async def _commits(url: str, rounds: int) -> int:
    """STREAMS sessions of the default model's size committing one frame each, all at once, `rounds` times,
    through the service's store (pipelined, as served); returns the commits made."""
    import numpy as np

    from poselift.sequence import SequenceOutput
    from service.config import Settings
    from service.sessions import Camera, RedisSessionStore, SessionState

    settings = Settings()
    store = RedisSessionStore.from_url(url, 300, timeout_s=2.0)
    camera = Camera("h36m17", 1920.0, 1080.0, FPS)
    kp, sc = np.zeros((1, 17, 2), np.float32), np.ones((1, 17), np.float32)
    poses, roots = np.zeros((1, 17, 3), np.float32), np.zeros((1, 3), np.float32)
    out = SequenceOutput(poses, roots, np.ones(1, np.float32))

    def advance(state: SessionState, seq: int) -> SessionState:
        return state.advance(np.array([seq]), kp, sc, out, settings.poses_held, 26)

    states = [SessionState(f"{k:032d}", camera, "", 27) for k in range(STREAMS)]
    for state in states:
        await store.create(state)
    for seq in range(settings.poses_held):  # full histories and held poses: a streaming session's size
        states = [advance(state, seq) for state in states]
    for state in states:
        await store.commit(state, "", alone=True)  # refused (wrong revision); sizes the Lua cache, no more
    states = [(await store.load(state.session_id)) for state in states]
    for seq in range(settings.poses_held, settings.poses_held + rounds):
        nexts = [advance(state, seq) for state in states]
        results = await asyncio.gather(
            *(store.commit(n, s.revision) for n, s in zip(nexts, states, strict=True))
        )
        assert all(written for written, _ in results)
        states = nexts
    await store.close()
    return STREAMS * rounds


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(frames: int, seconds: float) -> dict[str, float]:
    """Every figure of the document; the model first, on its own, as `bench.load` measures it."""
    from bench.load import measure_ceiling  # here: it loads torch and the model

    ceiling = measure_ceiling({}, [64], 1.0, paced_fps=FPS)
    figures = {
        "model_fps_64": ceiling.rate(64),
        "model_paced_ms": statistics.median(ceiling.batch1_paced_ms),
    }
    port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.floors", "--echo-server", str(port)])
    try:
        target = f"127.0.0.1:{port}"
        time.sleep(1.5)
        paced = asyncio.run(_echo_paced(target, frames))
        server_cpu, own_cpu = cpu_seconds(echo.pid), _own_cpu_s()
        count, span = asyncio.run(_echo_flat(target, seconds))
        server_cpu, own_cpu = cpu_seconds(echo.pid) - server_cpu, _own_cpu_s() - own_cpu
    finally:
        echo.terminate()
        echo.wait()
    with RedisServer() as redis_server:
        ping = asyncio.run(_redis_paced(redis_server.url, frames))
        store_cpu, redis_cpu = _own_cpu_s(), cpu_seconds(redis_server.process.pid)
        commits = asyncio.run(_commits(redis_server.url, 200))
        store_cpu, redis_cpu = _own_cpu_s() - store_cpu, cpu_seconds(redis_server.process.pid) - redis_cpu
    # CPU over the whole flat call (its 1-s warm-up included) per message answered in the measured span:
    # a slight overestimate, the same for client and server.
    total = count * (span + 1.0) / span
    figures.update(
        echo_paced_p50=_p(paced, 0.5),
        echo_paced_p99=_p(paced, 0.99),
        redis_paced_p50=_p(ping, 0.5),
        redis_paced_p99=_p(ping, 0.99),
        echo_flat_fps=count / span,
        client_us=own_cpu / total * 1e6,
        server_us=server_cpu / total * 1e6,
        # set-up (histories filled, sessions loaded) included: an overestimate of a few percent
        store_us=store_cpu / commits * 1e6,
        redis_us=redis_cpu / commits * 1e6,
    )
    return figures


def document(f: dict[str, float], note: str = "") -> str:
    model_us = CORES / f["model_fps_64"] * 1e6  # core-microseconds per frame at batch 64
    echo_model_fps = CORES / ((f["client_us"] + f["server_us"] + model_us) / 1e6)
    store_us = f["store_us"] + f["redis_us"]
    bound_fps = CORES / ((f["client_us"] + f["server_us"] + model_us + store_us) / 1e6)
    paced_floor = f["echo_paced_p50"] + f["redis_paced_p50"] + f["model_paced_ms"]
    load = os.getloadavg()[0]
    lines = [
        "# Floors: what no server can beat on this machine",
        "",
        "- command: `python -m bench.floors --out bench/FLOORS.md`",
        f"- taken: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}; load average when done "
        f"{load:.2f}",
        f"- {note}" if note else "",
        "",
        "| figure | value |",
        "|---|---|",
        f"| the model alone at batch 64 (served checkpoint and backend) | {f['model_fps_64']:,.0f} frames/s "
        f"({model_us:.0f} core-us per frame) |",
        f"| the model alone, batch 1 paced at {FPS:g} fps, p50 | {f['model_paced_ms']:.2f} ms |",
        f"| gRPC echo, 1 stream paced at {FPS:g} fps, p50 / p99 | {f['echo_paced_p50']:.2f} / "
        f"{f['echo_paced_p99']:.2f} ms |",
        f"| Redis PING from redis.asyncio, paced at {FPS:g} Hz, p50 / p99 | {f['redis_paced_p50']:.2f} / "
        f"{f['redis_paced_p99']:.2f} ms |",
        f"| gRPC echo, {STREAMS} streams flat out | {f['echo_flat_fps']:,.0f} frames/s |",
        f"| CPU per echoed frame: client / echo server | {f['client_us']:.0f} / {f['server_us']:.0f} us |",
        f"| CPU per session commit, {STREAMS} sessions at once (the service's store, pipelined): "
        f"building and sending it / redis-server | {f['store_us']:.0f} / {f['redis_us']:.0f} us |",
        "",
        "## Bounds for any Python gRPC server with a Python load client on this machine",
        "",
        f"- {STREAMS} flat-out streams, with no work per frame but the model: at most {CORES} cores / "
        f"(client + echo server + model per frame) = {echo_model_fps:,.0f} frames/s = "
        f"{echo_model_fps / f['model_fps_64']:.2f}x the model alone at batch 64; the echo alone, with "
        f"no model, answered {f['echo_flat_fps']:,.0f} ({f['echo_flat_fps'] / f['model_fps_64']:.2f}x).",
        f"- the same with each frame's session commit added (one Redis round trip per frame): "
        f"**{bound_fps:,.0f} frames/s = {bound_fps / f['model_fps_64']:.2f}x**, before any of the server's "
        "own work (decoding, windows, state, output).",
        f"- one paced stream's p50: at least echo + Redis round trip + paced pass = "
        f"{f['echo_paced_p50']:.2f} + {f['redis_paced_p50']:.2f} + {f['model_paced_ms']:.2f} = "
        f"**{paced_floor:.2f} ms**, {paced_floor - f['model_paced_ms']:.2f} ms above the paced pass.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300, help="paced round trips measured (default 300)")
    p.add_argument("--seconds", type=float, default=8.0, help="the flat-out span (default 8)")
    p.add_argument("--out", default=None, help="also write the document here, e.g. bench/FLOORS.md")
    p.add_argument("--note", default="", help="a line for the document")
    p.add_argument("--echo-server", type=int, default=None, help=argparse.SUPPRESS)  # the echo process
    args = p.parse_args()
    if args.echo_server is not None:
        asyncio.run(_echo_server(args.echo_server))
        return
    text = document(measure(args.frames, args.seconds), args.note)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
