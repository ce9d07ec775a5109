"""The service under load, next to the model alone measured in the same run with the server's settings.

Run: `make bench` (the model bench, then this, writing bench/RESULTS.md), or

    python -m bench.load [--seconds S] [--sessions 1,16,64,256] [--quick] [--out bench/RESULTS.md]
                         [--scenarios rest,streams,fairness] [--fairness-seconds S] [--fairness-chunks N,M]
                         [--workers 1,2]
                         [--threads N] [--checkpoint NAME] [--backend NAME] [--set NAME=VALUE ...]

It measures, in order:
1. the model alone (the ceiling): the server's model, device and torch threads, loaded the way the server
   loads it (`service.engine.load_model`), in this process before anything else runs: latency of one pass
   per batch size, so frames/s at batch B = B / median pass time;
2. one `poselift serve` process (sessions in a redis-server the bench starts on a free loopback port, never
   6379) under `/v1/lift` clients posting long clips back to back, then under StreamLift sessions (one frame
   per message, one frame in flight per stream), each paced like a 30 fps camera and flat out;
3. optionally the same streams against a server with the in-process session store;
4. fairness: one 30 fps stream alone, then beside one client posting 4096-frame clips to `/v1/lift` back to
   back, on a server per `POSELIFT_CLIP_CHUNK` value (`--scenarios fairness` runs only this).

The clients run in worker processes (`bench.loadgen`), each scenario for `--seconds` after a warm-up, and
stop by themselves. Every reply is checked; a run with any error says so loudly and exits 1. Figures are as
good as the machine is idle: the document records the load average before the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import loadgen
from bench.loadkit import (
    ROOT,
    Clip,
    RedisServer,
    RedisSnapshot,
    Server,
    metric_sum,
    tree_cpu_seconds,
    val_clip,
)
from bench.loadkit import percentiles_ms as pct
from bench.model import flops_per_frame, latency_ms, machine
from poselift import Lifter
from service.config import Settings
from service.engine import load_model

MODEL_BATCHES = (1, 4, 16, 64, 256)
TARGET_SHARE = 0.70  # target: 64 streams flat out reach >= 70 % of the model alone at batch 64
TARGET_STREAMS = 64
TARGET_SLACK_MS = 1.0  # target: one stream's p50 round trip <= batch-1 model latency + 1 ms
# Bench flags that become server settings (`POSELIFT_<NAME>`); `--set NAME=VALUE` reaches any other.
SERVER_FLAGS = {
    "threads": "torch_threads",
    "checkpoint": "checkpoint",
    "device": "device",
    "backend": "backend",
    "max_batch": "max_batch",
    "batch_wait_ms": "batch_wait_ms",
}


# --- the model alone ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    """The server's model alone in this process: pass times by batch size."""

    description: str  # checkpoint, backend, device, threads
    flops_per_frame: float
    batch1_ms: list[float]  # every timed batch-1 pass, back to back, ms
    pass_ms: dict[int, float]  # batch -> median ms of one pass
    paced_fps: float = 0.0  # the camera rate of `batch1_paced_ms` (0: not measured)
    batch1_paced_ms: list[float] = field(default_factory=list)  # batch-1 passes 1/paced_fps s apart, ms

    def rate(self, batch: int) -> float:
        """Frames/s at `batch` windows per pass."""
        return batch / self.pass_ms[batch] * 1e3


def paced_latency_ms(lifter: Lifter, fps: float, repeats: int) -> list[float]:
    """Batch-1 passes one camera frame apart (1/`fps` s idle before each), as a lone paced stream runs them.

    A pass after an idle gap is slower than back to back (caches and the CPU go cold between frames: on
    the 2-core dev VM ~1.5 ms against ~0.6 ms), so a paced stream is compared with this, not only with
    the back-to-back figure.
    """
    kp, sc = np.zeros((1, lifter.window, 17, 2), np.float32), np.ones((1, lifter.window, 17), np.float32)
    lifter.lift_windows(kp, sc)
    times = []
    for _ in range(repeats):
        time.sleep(1.0 / fps)
        started = time.perf_counter()
        lifter.lift_windows(kp, sc)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def measure_ceiling(
    settings: dict[str, str], batches: Sequence[int], scale: float, paced_fps: float = 0.0
) -> Ceiling:
    """Time the model as `poselift serve` with `settings` loads it (same checkpoint, device, backend and
    torch threads), `scale` x the default repeats; batch 1 also paced at `paced_fps` (0: not)."""
    lifter = load_model(Settings(**settings))  # type: ignore[arg-type]  # pydantic coerces the strings
    pass_ms = {}
    for batch in batches:
        repeats = max(5, int(scale * max(10, min(200, 2000 // batch))))
        pass_ms[batch] = statistics.median(latency_ms(lifter, batch, repeats))
    batch1 = latency_ms(lifter, 1, max(20, int(200 * scale)))
    backend = getattr(lifter, "backend", "torch")
    description = (
        f"checkpoint {lifter.checkpoint_id} ({lifter.metadata.get('config', {}).get('kind')}), "
        f"backend {backend}, {lifter.device}, {torch.get_num_threads()} torch threads"
    )
    paced = paced_latency_ms(lifter, paced_fps, max(20, int(60 * scale))) if paced_fps else []
    return Ceiling(description, flops_per_frame(lifter), batch1, pass_ms, paced_fps, paced)


def model_table(ceiling: Ceiling) -> str:
    lines = [
        "| FLOPs/frame | batch-1 latency p50 (ms) | p99 (ms) | batch-1 p50 paced (ms) | "
        + " | ".join(f"frames/s @{b}" for b in ceiling.pass_ms)
        + " |",
        "|---|---|---|---|" + "---|" * len(ceiling.pass_ms),
    ]
    p50, p99 = pct(np.asarray(ceiling.batch1_ms))
    paced = (
        f"{statistics.median(ceiling.batch1_paced_ms):.3f} (every {1e3 / ceiling.paced_fps:.0f} ms)"
        if ceiling.batch1_paced_ms
        else "—"
    )
    lines.append(
        f"| {ceiling.flops_per_frame / 1e6:.1f} M | {p50:.3f} | {p99:.3f} | {paced} | "
        + " | ".join(f"{ceiling.rate(b):,.0f} ({ms:.2f} ms)" for b, ms in ceiling.pass_ms.items())
        + " |"
    )
    return "\n".join(lines)


def run_model_bench(threads: str | None) -> str:
    """`python -m bench.model` (its own table of the shipped checkpoints), its output verbatim."""
    command = [sys.executable, "-m", "bench.model"] + (["--threads", threads] if threads else [])
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = done.stdout.strip()
    if done.returncode:
        text += f"\n\n(`{shlex.join(command[1:])}` failed with {done.returncode}: {done.stderr.strip()})"
    return text


# --- one measured span ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """Server, Redis and time at one instant."""

    at: float  # time.time()
    server_cpu_s: float
    metrics: dict[str, float]
    redis: RedisSnapshot | None


def _take(server: Server, redis: RedisServer | None, metrics_first: bool) -> Counters:
    """Counters now. At the start /metrics is scraped before Redis is read, at the end after, so the
    scrapes' own Redis commands fall outside the span."""
    metrics = server.metrics() if metrics_first else {}
    snap = redis.snapshot() if redis else None
    counters = Counters(time.time(), tree_cpu_seconds(server.pid), metrics, snap)  # with its workers
    if not metrics_first:
        counters.metrics.update(server.metrics())
    return counters


@dataclass(frozen=True)
class Span:
    """What the server and Redis did between two `Counters`."""

    wall_s: float
    server_cpu: float  # cores
    redis_cpu: float  # cores; NaN without Redis
    metrics: dict[str, float]  # deltas
    commands: int
    calls: dict[str, int]  # Redis command -> calls
    redis_writes: int

    def metric(self, name: str, **labels: str) -> float:
        return metric_sum(self.metrics, name, **labels)


def _span(a: Counters, b: Counters) -> Span:
    wall = b.at - a.at
    deltas = {key: value - a.metrics.get(key, 0.0) for key, value in b.metrics.items()}
    if a.redis is None or b.redis is None:
        return Span(wall, (b.server_cpu_s - a.server_cpu_s) / wall, float("nan"), deltas, 0, {}, 0)
    calls = {k: v - a.redis.calls.get(k, 0) for k, v in b.redis.calls.items()}
    own = calls.pop("info", 0)  # the bench's own INFO at the start
    calls = {k: v for k, v in calls.items() if v > 0}
    return Span(
        wall,
        (b.server_cpu_s - a.server_cpu_s) / wall,
        (b.redis.cpu_s - a.redis.cpu_s) / wall,
        deltas,
        b.redis.commands - a.redis.commands - own,
        calls,
        b.redis.writes - a.redis.writes,
    )


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


def _measure(
    pool: concurrent.futures.ProcessPoolExecutor,
    server: Server,
    redis: RedisServer | None,
    jobs: Sequence[tuple[Callable[[Any], Any], Any]],
    start_at: float,
    stop_at: float,
) -> tuple[list[Any], Span]:
    """Run `jobs` (function, spec) in the worker processes; count what the server and Redis do between
    `start_at` and `stop_at`; return the jobs' results and that span."""
    futures = [pool.submit(fn, spec) for fn, spec in jobs]
    _sleep_until(start_at)
    first = _take(server, redis, metrics_first=True)
    _sleep_until(stop_at)
    last = _take(server, redis, metrics_first=False)
    results = [future.result(timeout=120) for future in futures]
    return results, _span(first, last)


# --- REST ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestRow:
    clients: int
    frames: int  # per request
    requests: int  # answered within the span
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    span: Span
    client_cpu: float
    problems: loadgen.Problems


def lift_body(clip: Clip) -> bytes:
    """The JSON body of one `/v1/lift` of the whole clip (pixels to 0.01 px, as a detector might send)."""
    return json.dumps(
        {
            "layout": "h36m17",
            "width": clip.width,
            "height": clip.height,
            "fps": clip.fps,
            "keypoints": np.round(clip.keypoints_px.astype(np.float64), 2).tolist(),
        }
    ).encode()


def run_rest(
    pool: concurrent.futures.ProcessPoolExecutor, server: Server, clip: Clip, clients: int, opts: Options
) -> RestRow:
    """`clients` clients posting the clip to /v1/lift back to back for `opts.seconds`."""
    start_at = time.time() + 0.5 + opts.warmup_s
    stop_at = start_at + opts.seconds
    spec = loadgen.RestSpec(
        server.url, lift_body(clip), len(clip.keypoints_px), clients, opts.warmup_s, start_at, stop_at
    )
    [result], span = _measure(pool, server, None, [(loadgen.run_rest, spec)], start_at, stop_at)
    return _rest_row(spec, result, span)


def _rest_row(spec: loadgen.RestSpec, result: loadgen.RestResult, span: Span) -> RestRow:
    """What the `/v1/lift` clients of `spec` achieved between its start_at and stop_at."""
    start_at, stop_at = spec.start_at, spec.stop_at
    # Frames of each answer, prorated to the part of its time inside the span (answers take ~a second).
    frames = sum(
        spec.frames * max(0.0, min(end, stop_at) - max(begin, start_at)) / (end - begin)
        for begin, end in result.spans
    )
    inside = np.asarray([(end - begin) * 1e3 for begin, end in result.spans if start_at <= end < stop_at])
    return RestRow(
        spec.clients,
        spec.frames,
        len(inside),
        frames / (stop_at - start_at),
        *pct(inside),
        span,
        result.cpu_s / (stop_at - start_at),
        result.problems,
    )


# --- StreamLift --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRow:
    store: str
    sessions: int
    fps: float  # per stream; 0: flat out
    frames_per_s: float  # poses received within the span, per second
    p50_ms: float
    p99_ms: float
    span: Span
    client_cpu: float  # cores
    client_procs: int
    server_frames: float  # StreamLift frames the server answered within the span
    session_bytes: float  # mean MEMORY USAGE of a session hash; NaN without Redis
    index_bytes: float  # the index's bytes per session
    short_sessions: int  # sampled sessions that saw fewer frames than the window (history not yet full)
    problems: loadgen.Problems
    late_open_s: float  # how far into the measured span the last stream opened (0: before it)
    workers: int = 1  # the server's POSELIFT_WORKERS

    @property
    def where(self) -> str:
        """The store, and the worker count when several."""
        return self.store if self.workers == 1 else f"{self.store}, {self.workers} workers"

    @property
    def mode(self) -> str:
        return f"paced {self.fps:g} fps" if self.fps else "flat out"

    def per_frame(self, count: float) -> float:
        return count / self.server_frames if self.server_frames else float("nan")


def run_streams(
    pool: concurrent.futures.ProcessPoolExecutor,
    server: Server,
    redis: RedisServer | None,
    clip: Clip,
    sessions: int,
    fps: float,
    opts: Options,
) -> StreamRow:
    """`sessions` StreamLift sessions, paced at `fps` (0: flat out), measured for `opts.seconds`."""
    procs = opts.client_procs or (1 if sessions <= 64 else 2)
    procs = min(procs, sessions)
    start_at = time.time() + 0.5 + 0.005 * sessions + opts.warmup_s
    stop_at = start_at + opts.seconds
    shares = [sessions // procs + (i < sessions % procs) for i in range(procs)]
    jobs = []
    for i, share in enumerate(shares):
        spec = loadgen.StreamSpec(
            server.target, clip, share, sum(shares[:i]), sessions, fps, opts.warmup_s, start_at, stop_at,
            opts.streams_per_channel,
        )  # fmt: skip
        jobs.append((loadgen.run_streams, spec))
    results, span = _measure(pool, server, redis, jobs, start_at, stop_at)
    return _stream_row(redis, sessions, fps, results, span, start_at, stop_at)


def _stream_row(
    redis: RedisServer | None,
    sessions: int,
    fps: float,
    results: Sequence[loadgen.StreamResult],
    span: Span,
    start_at: float,
    stop_at: float,
) -> StreamRow:
    """What `sessions` streams at `fps` (their worker processes' `results`) achieved between start_at and
    stop_at; the session bytes read from Redis now."""
    procs = len(results)
    merged = loadgen.StreamResult(np.zeros(0, np.float32))
    for result in results:
        merged.merge(result)
    session_bytes, index_bytes, _, short = (
        redis.session_bytes() if redis else (float("nan"), float("nan"), 0, 0)
    )
    return StreamRow(
        "redis" if redis else "memory",
        sessions,
        fps,
        len(merged.rtt_ms) / (stop_at - start_at),
        *pct(merged.rtt_ms),
        span,
        merged.cpu_s / (stop_at - start_at),
        procs,
        span.metric("poselift_stream_frames_total"),
        session_bytes,
        index_bytes,
        short,
        merged.problems,
        max(0.0, merged.last_open_at - start_at),
    )


# --- fairness: a live stream while long clips are lifted ---------------------------------------------

FAIRNESS_FACTOR = 2.0  # the stream's RTT p99 under back-to-back clips <= 2x its p99 alone


@dataclass(frozen=True)
class FairnessRow:
    """One paced stream alone, then the same stream beside one client posting long clips back to back,
    on one server whose `/v1/lift` sends a clip to the model `chunk` windows at a time."""

    chunk: int  # the server's POSELIFT_CLIP_CHUNK
    idle: StreamRow
    loaded: StreamRow
    clips: RestRow
    clips_in_flight: float  # share of the loaded span during which a clip request was open

    @property
    def ratio(self) -> float:
        """The stream's RTT p99 under clip load over its p99 alone."""
        return self.loaded.p99_ms / self.idle.p99_ms

    @property
    def met(self) -> bool:
        return bool(self.ratio <= FAIRNESS_FACTOR)


def _in_flight(spans: Sequence[tuple[float, float]], start_at: float, stop_at: float) -> float:
    """The share of [start_at, stop_at) covered by the (sent, answered) intervals of one client."""
    covered = sum(max(0.0, min(end, stop_at) - max(begin, start_at)) for begin, end in spans)
    return covered / (stop_at - start_at)


def run_fairness(
    pool: concurrent.futures.ProcessPoolExecutor,
    server: Server,
    redis: RedisServer,
    clip: Clip,
    chunk: int,
    opts: Options,
) -> FairnessRow:
    """One StreamLift session paced at `opts.fairness_fps` measured alone for `opts.fairness_seconds`, then
    a new one for as long beside one `/v1/lift` client posting `clip` back to back (real HTTP, its own
    worker process): both spans on the same server, one after the other."""
    span_opts = dataclasses.replace(opts, seconds=opts.fairness_seconds)
    idle = run_streams(pool, server, redis, clip, 1, opts.fairness_fps, span_opts)
    redis.flush()
    start_at = time.time() + 0.5 + opts.warmup_s
    stop_at = start_at + opts.fairness_seconds
    stream = loadgen.StreamSpec(
        server.target, clip, 1, 0, 1, opts.fairness_fps, opts.warmup_s, start_at, stop_at,
        opts.streams_per_channel,
    )  # fmt: skip
    rest = loadgen.RestSpec(
        server.url, lift_body(clip), len(clip.keypoints_px), 1, opts.warmup_s, start_at, stop_at
    )
    jobs: list[tuple[Callable[[Any], Any], Any]] = [(loadgen.run_streams, stream), (loadgen.run_rest, rest)]
    (streamed, lifted), span = _measure(pool, server, redis, jobs, start_at, stop_at)
    loaded = _stream_row(redis, 1, opts.fairness_fps, [streamed], span, start_at, stop_at)
    clips = _rest_row(rest, lifted, span)
    return FairnessRow(chunk, idle, loaded, clips, _in_flight(lifted.spans, start_at, stop_at))


FAIRNESS_TEXT = """\
One StreamLift session paced like a {fps:g} fps camera (sessions in Redis), measured alone for {s:g} s, then
a new one for {s:g} s while one client posts {frames}-frame clips to `/v1/lift` back to back (real HTTP, its
own process), on the same server: one worker, so one batching queue (unless `--set workers=N`). While the
stream is open the server sends a clip to the model POSELIFT_CLIP_CHUNK windows at a time, each chunk awaited
before the next, and answers the stream's frames in passes of their own between chunks. *clips in
flight*: the share of the span during which a clip request was open (between clips the stream runs alone);
*model pass @chunk*: one pass of that many windows, the model alone; *bytes/session*: `MEMORY USAGE` of the
session's hash after its span, + the index's bytes per session (* as below)."""


def fairness_table(rows: Sequence[FairnessRow], ceiling: Ceiling) -> str:
    """Per server (clip chunk): the stream alone and under clips, the clips' throughput, then the target."""
    lines = [
        "| POSELIFT_CLIP_CHUNK | load | stream RTT p50 (ms) | stream RTT p99 (ms) | stream frames/s "
        "| clip frames/s | clips answered in span | clip latency p50 (ms) | clips in flight "
        "| model pass @chunk (ms) | windows/pass | model busy | server CPU | clip client CPU "
        "| bytes/session (+ index) | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        pass_ms = _n(ceiling.pass_ms.get(f.chunk, float("nan")), ".2f")
        for s, load in ((f.idle, "none"), (f.loaded, f"{f.clips.frames}-frame clips back to back")):
            passes = s.span.metric("poselift_batch_windows_count")
            windows = s.span.metric("poselift_batch_windows_sum") / passes if passes else float("nan")
            busy = s.span.metric("poselift_inference_seconds_sum") / s.span.wall_s
            c = f.clips if s is f.loaded else None
            lines.append(
                f"| {f.chunk} | {load} | {_n(s.p50_ms, '.2f')} | {_n(s.p99_ms, '.2f')} "
                f"| {s.frames_per_s:,.1f} "
                f"| {f'{c.frames_per_s:,.0f}' if c else '—'} | {c.requests if c else '—'} "
                f"| {_n(c.p50_ms, '.1f') if c else '—'} | {f'{f.clips_in_flight:.0%}' if c else '—'} "
                f"| {pass_ms} | {_n(windows, '.1f')} | {busy:.0%} | {s.span.server_cpu:.2f} "
                f"| {f'{c.client_cpu:.2f}' if c else '—'} | {_bytes(s)} "
                f"| {s.problems.total + (c.problems.total if c else 0)} |"
            )
    lines += [
        "",
        "| target | POSELIFT_CLIP_CHUNK | p99 alone | p99 under clips | ratio | result |",
        "|---|---|---|---|---|---|",
    ]
    for f in rows:
        lines.append(
            f"| 1 stream ({f.idle.mode}): RTT p99 while {f.clips.frames}-frame clips are lifted back to "
            f"back ≤ {FAIRNESS_FACTOR:g}× its p99 alone | {f.chunk} | {f.idle.p99_ms:.2f} ms "
            f"| {f.loaded.p99_ms:.2f} ms | {f.ratio:.2f}× | {'met' if f.met else '**missed**'} |"
        )
    return "\n".join(lines)


# --- tables --------------------------------------------------------------------------------------------


def _x(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}×" if ceiling and np.isfinite(value) else "—"


def _n(value: float, fmt: str = ",.0f") -> str:
    return format(value, fmt) if np.isfinite(value) else "—"


def _bytes(r: StreamRow) -> str:
    """Bytes per session (+ the index's per session); a * when some sessions' history was not yet full."""
    return f"{_n(r.session_bytes)}{'*' if r.short_sessions else ''} (+ {_n(r.index_bytes)})"


def rest_table(rows: Sequence[RestRow], ceiling: Ceiling) -> str:
    frames = rows[0].frames
    lines = [
        f"| clients | frames/request | answers in span | frames/s | × model @256 | × model @{frames} "
        "| latency p50 (ms) | p99 (ms) | × model pass @clip | server CPU (cores) | model busy "
        "| client CPU (cores) | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        busy = r.span.metric("poselift_inference_seconds_sum") / r.span.wall_s
        lines.append(
            f"| {r.clients} | {r.frames} | {r.requests} | {r.frames_per_s:,.0f} "
            f"| {_x(r.frames_per_s, ceiling.rate(256))} | {_x(r.frames_per_s, ceiling.rate(r.frames))} "
            f"| {_n(r.p50_ms, '.1f')} | {_n(r.p99_ms, '.1f')} | {_x(r.p50_ms, ceiling.pass_ms[r.frames])} "
            f"| {r.span.server_cpu:.2f} | {busy:.0%} | {r.client_cpu:.2f} | {r.problems.total} |"
        )
    return "\n".join(lines)


def stream_table(rows: Sequence[StreamRow], ceiling: Ceiling) -> str:
    lines = [
        "| sessions | mode | offered frames/s | frames/s | × model @B | RTT p50 (ms) | RTT p99 (ms) "
        "| × model pass @B | windows/pass | model busy | server CPU | client CPU (procs) | Redis CPU "
        "| Redis cmds/frame | Redis round trips/frame | bytes/session (+ index) | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        passes = r.span.metric("poselift_batch_windows_count")
        windows = r.span.metric("poselift_batch_windows_sum") / passes if passes else float("nan")
        busy = r.span.metric("poselift_inference_seconds_sum") / r.span.wall_s
        offered = _n(r.sessions * r.fps) if r.fps else "—"
        redis = r.store == "redis"
        lines.append(
            f"| {r.sessions} | {r.mode} | {offered} | {r.frames_per_s:,.0f} "
            f"| {_x(r.frames_per_s, ceiling.rate(r.sessions))} "
            f"| {_n(r.p50_ms, '.2f')} | {_n(r.p99_ms, '.2f')} "
            f"| {_x(r.p50_ms, ceiling.pass_ms[r.sessions])} | {_n(windows, '.1f')} | {busy:.0%} "
            f"| {r.span.server_cpu:.2f} | {r.client_cpu:.2f} ({r.client_procs}) "
            f"| {_n(r.span.redis_cpu, '.2f') if redis else '—'} "
            f"| {_n(r.per_frame(r.span.commands), '.2f') if redis else '—'} "
            f"| {_n(r.per_frame(r.span.redis_writes), '.2f') if redis else '—'} "
            f"| {_bytes(r) if redis else '—'} "
            f"| {r.problems.total} |"
        )
    return "\n".join(lines)


def commands_table(rows: Sequence[StreamRow]) -> str:
    """Redis commands per answered frame, by command (those at >= 0.01 per frame in some row)."""
    names = sorted(
        {name for r in rows for name, calls in r.span.calls.items() if r.per_frame(calls) >= 0.01},
        key=lambda name: -max(r.per_frame(r.span.calls.get(name, 0)) for r in rows),
    )
    lines = [
        "| sessions | mode | frames answered | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = " | ".join(f"{r.per_frame(r.span.calls.get(name, 0)):.2f}" for name in names)
        lines.append(f"| {r.sessions} | {r.mode} | {r.server_frames:,.0f} | {cells} |")
    return "\n".join(lines)


def targets_table(rows: Sequence[StreamRow], ceiling: Ceiling) -> str:
    """The serving targets (TARGET_SHARE, TARGET_SLACK_MS), met or missed, for each store measured."""
    lines = ["| target | store | measured | ceiling | result |", "|---|---|---|---|---|"]
    batch1 = statistics.median(ceiling.batch1_ms)
    for r in rows:
        if r.sessions == TARGET_STREAMS and not r.fps and TARGET_STREAMS in ceiling.pass_ms:
            model = ceiling.rate(TARGET_STREAMS)
            met = r.frames_per_s >= TARGET_SHARE * model
            lines.append(
                f"| {TARGET_STREAMS} streams flat out ≥ {TARGET_SHARE:.0%} of the model alone at batch "
                f"{TARGET_STREAMS} | {r.where} "
                f"| {r.frames_per_s:,.0f} frames/s ({r.frames_per_s / model:.0%}) "
                f"| {model:,.0f} frames/s | {'met' if met else '**missed**'} |"
            )
        if r.sessions == 1:
            met = r.p50_ms <= batch1 + TARGET_SLACK_MS
            lines.append(
                f"| 1 stream ({r.mode}): p50 round trip ≤ batch-1 model latency + {TARGET_SLACK_MS:g} ms "
                f"| {r.where} | {r.p50_ms:.2f} ms | {batch1:.2f} + {TARGET_SLACK_MS:g} ms "
                f"| {'met' if met else '**missed**'} |"
            )
            if r.fps and ceiling.batch1_paced_ms:  # like with like: the model's pass after the same idle gap
                paced = statistics.median(ceiling.batch1_paced_ms)
                met = r.p50_ms <= paced + TARGET_SLACK_MS
                lines.append(
                    f"| 1 stream ({r.mode}): p50 round trip ≤ batch-1 model latency at the same pace + "
                    f"{TARGET_SLACK_MS:g} ms | {r.where} | {r.p50_ms:.2f} ms | {paced:.2f} + "
                    f"{TARGET_SLACK_MS:g} ms | {'met' if met else '**missed**'} |"
                )
    return "\n".join(lines)


def problems_text(rest: Sequence[RestRow], streams: Sequence[StreamRow]) -> str:
    """'' when every reply was right; else a loud list of what went wrong where."""
    lines = []
    for r in rest:
        if r.problems.total:
            lines.append(f"- REST {r.clients} client(s): {dict(r.problems.counts)}; {r.problems.examples}")
    for s in streams:
        if s.problems.total:
            counts = dict(s.problems.counts)
            lines.append(f"- {s.store} {s.sessions} sessions {s.mode}: {counts}; {s.problems.examples}")
    if not lines:
        return ""
    banner = "**ERRORS: THIS RUN HAD WRONG OR MISSING REPLIES; ITS FIGURES ARE NOT VALID**"
    return banner + "\n\n" + "\n".join(lines)


COLUMNS = """\
- *model alone*: the server's model (`service.engine.load_model` with the server's settings: checkpoint,
  device, backend, torch threads) timed in the bench process before the server starts; one "frame" is one
  causal window whose newest pose is returned. frames/s @B = B / median time of one pass of B windows (in
  brackets). batch-1 latency: every timed pass of one window.
- *frames/s*: poses received by the clients within the measured span, per second (REST: frames of the
  answers, each prorated to the part of its request inside the span). *× model @B*: that over the model
  alone at batch B; for StreamLift B = sessions, the most windows one pass can hold when each stream has one
  frame in flight. *× model pass @B*: the round trip's p50 over the time of one pass of B windows.
- *offered frames/s*: sessions × fps of paced streams; frames/s below it means the server did not keep up:
  a stream whose reply comes after its next frame's slot sends at once, and drops the slots it missed
  entirely, as a live camera drops stale frames.
- *RTT*: from writing a frame on its stream to reading its pose, in the client process (ms).
- *windows/pass*: mean windows per forward pass of the server's batching worker (its /metrics);
  *model busy*: the share of the wall time the worker spent in forward passes (with several server
  workers, each with its own model, their sum: up to workers × 100 %).
- *server CPU*, *windows/pass* and *model busy* with several workers: `/metrics` of any worker is the
  replica's (prometheus_client multiprocess mode), and the CPU is the supervisor's and its workers'.
- *server / client / Redis CPU*: user + system CPU seconds of the `poselift serve` process, of the client
  worker processes (how many in brackets), and of the redis-server, over the span's wall time: cores.
- *Redis cmds/frame*: redis-server INFO `total_commands_processed` over StreamLift frames the server answered
  in the span (its /metrics); commands inside MULTI/EXEC and inside Lua scripts are counted too (the
  breakdown below shows which). *Redis round trips/frame*: write syscalls of the redis-server per frame;
  Redis answers each request, or each pipeline read at once, with one write, so this counts the server's
  round trips to Redis. The gRPC health check's PING (1/s) is in both.
- *bytes/session*: mean `MEMORY USAGE` of the session hashes `poselift:session:<id>` after the scenario
  (before it all keys are flushed), + the index `poselift:sessions`' bytes per session. A hash grows with
  the session's 2D history until it holds the model's window (W - 1 frames at the model's 30 fps: 80 for
  the tcn); * marks a figure where some sessions had seen fewer than W frames, so it is below the full size.
- *problems*: FrameErrors, replies that are not the pose of the frame just sent, streams that did not end
  OK; any makes the run invalid.
"""


# --- the run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup_s: float
    sessions: tuple[int, ...]
    fps_modes: tuple[float, ...]  # per stream; 0 = flat out
    rest_clients: tuple[int, ...]
    rest_frames: int
    stores: tuple[str, ...]
    client_procs: int  # 0: 1 up to 64 sessions, else 2
    streams_per_channel: int
    model_scale: float  # repeats of the model timings, x the default
    server_settings: dict[str, str] = field(default_factory=dict)
    fairness_frames: int = 0  # frames of each clip beside the fairness stream; 0: no fairness scenario
    fairness_seconds: float = 60.0  # each of its two spans (alone, under clips): a p99 of 1,800 frames
    fairness_fps: float = 30.0
    fairness_chunks: tuple[int, ...] = ()  # POSELIFT_CLIP_CHUNK of each fairness server; (): the setting's
    workers: tuple[int, ...] = (1,)  # POSELIFT_WORKERS of the REST/StreamLift servers, one server each


def _ints(text: str) -> tuple[int, ...]:
    """Comma-separated counts, e.g. `1,16,64`; 0 or nothing skips those scenarios."""
    return tuple(n for part in text.split(",") if part.strip() and (n := int(part)) > 0)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Options]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=None, help="measured span of each scenario (default 10)")
    p.add_argument("--warmup", type=float, default=None, help="seconds before each span (default 2)")
    p.add_argument("--sessions", type=_ints, default=None, help="concurrent streams (default 1,16,64,256)")
    p.add_argument("--modes", default="paced,flat", help="paced (like a camera at --fps), flat (flat out)")
    p.add_argument("--fps", type=float, default=30.0, help="frames/s of a paced stream")
    p.add_argument("--rest-clients", type=_ints, default=None, help="concurrent /v1/lift clients (1,4)")
    p.add_argument("--rest-frames", type=int, default=2000, help="frames per /v1/lift request")
    p.add_argument(
        "--workers",
        type=_ints,
        default=None,
        help="POSELIFT_WORKERS of the servers, one server and StreamLift table each (default 1,2; --quick "
        "1); REST runs on the first; more than one worker runs with Redis only",
    )
    p.add_argument("--stores", default=None, help="redis and/or memory (default redis,memory)")
    p.add_argument("--client-procs", type=int, default=0, help="client processes (0: 1, 2 above 64 streams)")
    p.add_argument("--streams-per-channel", type=int, default=16, help="streams per gRPC channel")
    p.add_argument(
        "--scenarios", default="rest,streams,fairness", help="which to run: rest, streams, fairness (all)"
    )
    p.add_argument("--fairness-frames", type=int, default=4096, help="frames per clip beside the stream")
    p.add_argument("--fairness-seconds", type=float, default=None, help="each fairness span (default 60)")
    p.add_argument(
        "--fairness-chunks", type=_ints, default=(), help="POSELIFT_CLIP_CHUNK values, one server each, "
        "e.g. 32,4096 (default: the server's setting)"
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a ~1-minute smoke run (figures not comparable)")
    p.add_argument("--model-bench", action="store_true", help="also run `python -m bench.model` first")
    p.add_argument("--out", default=None, help="write the document (markdown) here, e.g. bench/RESULTS.md")
    p.add_argument("--note", default="", help="a line for the document, e.g. why figures may be noisy")
    server = p.add_argument_group("server settings (POSELIFT_*; unset: the environment's or the default)")
    server.add_argument("--threads", help="POSELIFT_TORCH_THREADS (also the model-alone threads)")
    server.add_argument("--checkpoint", help="POSELIFT_CHECKPOINT")
    server.add_argument("--device", help="POSELIFT_DEVICE")
    server.add_argument("--backend", help="POSELIFT_BACKEND (if this server has that setting)")
    server.add_argument("--max-batch", help="POSELIFT_MAX_BATCH")
    server.add_argument("--batch-wait-ms", help="POSELIFT_BATCH_WAIT_MS")
    server.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any setting")
    args = p.parse_args(argv)
    settings = {SERVER_FLAGS[k]: v for k, v in vars(args).items() if k in SERVER_FLAGS and v is not None}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: expected NAME=VALUE")
        settings[name.lower().removeprefix("poselift_")] = value
    unknown = [name for name in settings if name not in Settings.model_fields]
    if unknown:
        p.error(f"this server has no setting {', '.join('POSELIFT_' + n.upper() for n in unknown)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"paced", "flat"}:
        p.error(f"--modes: paced and/or flat, got {args.modes!r}")
    stores = tuple((args.stores or ("redis" if args.quick else "redis,memory")).split(","))
    if not set(stores) <= {"redis", "memory"}:
        p.error(f"--stores: redis and/or memory, got {args.stores!r}")
    scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    if not scenarios or not scenarios <= {"rest", "streams", "fairness"}:
        p.error(f"--scenarios: rest, streams and/or fairness, got {args.scenarios!r}")
    quick = args.quick
    sessions = args.sessions if args.sessions is not None else (1, 16, 64) if quick else (1, 16, 64, 256)
    rest_clients = args.rest_clients if args.rest_clients is not None else (1,) if quick else (1, 4)
    opts = Options(
        seconds=args.seconds or (3.0 if quick else 10.0),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        sessions=sessions if "streams" in scenarios else (),
        fps_modes=tuple(args.fps if m == "paced" else 0.0 for m in modes),
        rest_clients=rest_clients if "rest" in scenarios else (),
        rest_frames=args.rest_frames,
        stores=stores,
        client_procs=args.client_procs,
        streams_per_channel=args.streams_per_channel,
        model_scale=0.25 if quick else 1.0,
        server_settings=settings,
        fairness_frames=args.fairness_frames if "fairness" in scenarios else 0,
        fairness_seconds=args.fairness_seconds or (6.0 if quick else 60.0),
        fairness_fps=args.fps,
        fairness_chunks=args.fairness_chunks,
        workers=args.workers or ((1,) if quick else (1, 2)),
    )
    return args, opts


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return ""


def _provenance() -> str:
    """When and from what the run began: UTC date, git commit, whether tracked files differ from it."""
    commit = _git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no").strip() else ""
    return f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {commit}{dirty}"


def _header(
    args: argparse.Namespace, opts: Options, began: str, machine: str, load: tuple[float, ...]
) -> str:
    via_make = " (via `make bench`)" if os.environ.get("MAKELEVEL") else ""
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    notes = [args.note] if args.note else []
    if args.quick:
        notes.append("`--quick` smoke run: short spans, figures not comparable with a full run")
    if load[0] > 0.5:
        notes.append(f"the machine was not idle when the run began (load average {load[0]:.2f})")
    lines = [
        "# poselift speed: the model alone, REST and streaming gRPC",
        "",
        f"- command: `{shlex.join(['python', '-m', 'bench.load', *sys.argv[1:]])}`{via_make}",
        f"- began: {began}",
        f"- machine: {machine}; load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- server: one `poselift serve` on loopback (POSELIFT_WORKERS {', '.join(map(str, opts.workers))}: "
        "one server each; REST on the first), settings from the environment"
        + (f" and {', '.join(f'POSELIFT_{k.upper()}={v}' for k, v in opts.server_settings.items())}"
           if opts.server_settings else "")
        + f"; sessions in a redis-server ({redis_version.split(' sha')[0].strip()}, no persistence)",
        f"- each scenario: {opts.warmup_s:g} s warm-up, then {opts.seconds:g} s measured; StreamLift: one"
        f" frame in flight per stream, {opts.streams_per_channel} streams per channel (TCP connection)",
    ]  # fmt: skip
    lines += [f"- **note: {note}**" for note in notes]
    return "\n".join(lines)


STORE_TITLES = (("redis", "sessions in Redis"), ("memory", "in-process session store"))


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    began, load = _provenance(), os.getloadavg()
    model_bench = run_model_bench(args.threads) if args.model_bench else ""
    if model_bench:
        print(model_bench, flush=True)
    chunks = opts.fairness_chunks or (Settings(**opts.server_settings).clip_chunk,)  # type: ignore[arg-type]
    chunks = chunks if opts.fairness_frames else ()
    batches = sorted(
        {*MODEL_BATCHES, *opts.sessions, *chunks, *([opts.rest_frames] if opts.rest_clients else [])}
    )
    paced_fps = max([*opts.fps_modes, *([opts.fairness_fps] if chunks else [])], default=0.0)
    ceiling = measure_ceiling(opts.server_settings, batches, opts.model_scale, paced_fps)
    machine_line = machine()
    print(f"machine: {machine_line}\nmodel alone: {ceiling.description}\n{model_table(ceiling)}", flush=True)
    clip = val_clip(opts.rest_frames)
    rest: list[RestRow] = []
    streams: list[StreamRow] = []
    fairness: list[FairnessRow] = []
    spawn = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool,
        RedisServer() as redis,
    ):
        for future in [pool.submit(loadgen.warm) for _ in range(2)]:
            future.result()
        for workers, store in [(w, s) for w in opts.workers for s in opts.stores]:
            first = workers == opts.workers[0] and store == opts.stores[0]  # REST runs on this server only
            if (workers > 1 and store == "memory") or not (opts.sessions or (first and opts.rest_clients)):
                continue  # several workers share sessions through Redis only
            store_redis = redis if store == "redis" else None
            settings = {**opts.server_settings, "workers": str(workers)}
            with Server(settings, redis.url if store_redis else "") as server:
                if first:
                    for clients in opts.rest_clients:
                        rest.append(run_rest(pool, server, clip, clients, opts))
                        print(rest_table(rest[-1:], ceiling).splitlines()[-1], flush=True)
                for sessions in opts.sessions:
                    for fps in opts.fps_modes:
                        row = run_streams(pool, server, store_redis, clip, sessions, fps, opts)
                        streams.append(dataclasses.replace(row, workers=workers))
                        print(f"{streams[-1].where}: " + stream_table(streams[-1:], ceiling).splitlines()[-1])
                        redis.flush()
        for chunk in chunks:  # one server per clip chunk, sessions in Redis, one worker unless --set
            settings = {"workers": "1", **opts.server_settings, "clip_chunk": str(chunk)}
            with Server(settings, redis.url) as server:
                fairness.append(
                    run_fairness(pool, server, redis, val_clip(opts.fairness_frames), chunk, opts)
                )
                print("fairness:\n" + fairness_table(fairness[-1:], ceiling), flush=True)
                redis.flush()

    problems = problems_text(
        [*rest, *(f.clips for f in fairness)], [*streams, *(s for f in fairness for s in (f.idle, f.loaded))]
    )
    sections = [_header(args, opts, began, machine_line, load)]
    sections += [
        f"- note: in {r.store} {r.sessions} sessions {r.mode} the last stream opened {r.late_open_s:.1f} s "
        "into the measured span"
        for r in streams
        if r.late_open_s > 0
    ]
    if problems:
        sections.append(problems)
    if model_bench:
        sections.append("## The model alone: `python -m bench.model`\n\n" + model_bench)
    sections.append(
        "## The ceiling: the server's model alone, this run\n\n"
        f"{ceiling.description}\n\n{model_table(ceiling)}"
    )
    if streams:
        sections.append("## Targets\n\n" + targets_table(streams, ceiling))
    if rest:
        sections.append("## REST `/v1/lift`, long clips\n\n" + rest_table(rest, ceiling))
    if fairness:
        sections.append(
            "## Fairness: one live stream while long clips are lifted\n\n"
            + FAIRNESS_TEXT.format(
                fps=opts.fairness_fps, frames=opts.fairness_frames, s=opts.fairness_seconds
            )
            + "\n\n"
            + fairness_table(fairness, ceiling)
        )
    for (store, title), workers in [(s, w) for w in opts.workers for s in STORE_TITLES]:
        rows = [r for r in streams if r.store == store and r.workers == workers]
        if rows:
            count = f", {workers} worker{'s' if workers > 1 else ''}" if opts.workers != (1,) else ""
            sections.append(f"## StreamLift, {title}{count}\n\n" + stream_table(rows, ceiling))
            if store == "redis":
                sections.append("### Redis commands per frame, by command\n\n" + commands_table(rows))
    sections.append("## What the columns mean\n\n" + COLUMNS)
    document = "\n\n".join(sections) + "\n"
    print("\n" + document)
    if args.out:
        Path(args.out).write_text(document)
        print(f"written to {args.out}")
    if problems:
        print("\n" + problems.splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
