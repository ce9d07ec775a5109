"""The load bench's clients, run in worker processes (`bench.load` spawns them): StreamLift sessions over
grpc.aio and `/v1/lift` clients over httpx, each for a bounded, absolute time span.

Every client sends from `start_at - warm-up` and stops sending at `stop_at` (`time.time()`, shared by all
processes); only replies that arrive within [`start_at`, `stop_at`) are measured. Every reply is checked:
a stream's reply must be the pose of the frame just sent (17 x 3 finite numbers), a `/v1/lift` answer 200
with one 17 x 3 pose per frame; anything else is counted and the first one described.

Lean on purpose (the clients share the CPU with the server): request messages are serialized once and
shared by all streams of a process (every session sends the same seqs), one channel (its own TCP
connection) serves `streams_per_channel` streams, and each stream is one coroutine that writes a frame
and reads its reply: one frame in flight per stream. The calls are poselift_client's (`open_stream`, which
sends the pre-serialized bytes as they are); a broken stream is not resumed but counted as a problem, since
the bench measures a healthy server and any break is a finding.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from poselift_client import pb
from poselift_client.stream import open_stream

from bench.loadkit import Clip, cpu_seconds

POSE_VALUES = 17 * 3
GRACE_S = 30.0  # a client still running this long after its span ended is cancelled and counted


@dataclass(frozen=True)
class StreamSpec:
    """The StreamLift sessions one worker process runs."""

    target: str  # host:port
    clip: Clip
    streams: int  # sessions this process runs, one stream each
    first_index: int  # global index of its first stream (spreads the paced streams' phases)
    total_streams: int  # over all processes
    fps: float  # frames/s each stream sends, like a camera; 0: flat out (next frame once a reply arrives)
    warmup_s: float
    start_at: float  # time.time(): measuring starts
    stop_at: float  # time.time(): sending stops
    streams_per_channel: int = 16


@dataclass
class Problems:
    """What went wrong: counts by kind and the first few descriptions."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {detail}")

    def merge(self, other: Problems) -> None:
        self.counts.update(other.counts)
        self.examples += other.examples[: max(0, 5 - len(self.examples))]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class StreamResult:
    """What the streams of one process (or, merged, of all) saw."""

    rtt_ms: np.ndarray  # (N,) round trips of the poses that arrived within the measured span, ms
    sent: int = 0  # frames sent, warm-up included
    poses: int = 0  # poses received, warm-up included
    problems: Problems = field(default_factory=Problems)  # frame errors, wrong replies, aborted streams
    cpu_s: float = 0.0  # CPU seconds of the client process(es) within the measured span
    last_open_at: float = 0.0  # time.time() when the last stream had its session reply

    def merge(self, other: StreamResult) -> None:
        self.rtt_ms = np.concatenate([self.rtt_ms, other.rtt_ms])
        self.sent += other.sent
        self.poses += other.poses
        self.problems.merge(other.problems)
        self.cpu_s += other.cpu_s
        self.last_open_at = max(self.last_open_at, other.last_open_at)


class _Messages:
    """Serialized frame messages by seq (frame seq % T of the clip), built once, shared by all streams."""

    def __init__(self, clip: Clip):
        self.clip = clip
        self.frames: list[bytes] = []
        self.open = pb.StreamLiftRequest(
            open=pb.Camera(width=clip.width, height=clip.height, fps=clip.fps, layout=pb.LAYOUT_H36M17)
        ).SerializeToString()

    def frame(self, seq: int) -> bytes:
        while len(self.frames) <= seq:
            index = len(self.frames)
            keypoints = self.clip.keypoints_px[index % len(self.clip.keypoints_px)].reshape(-1)
            message = pb.StreamLiftRequest(frame=pb.Frame(seq=index, keypoints=keypoints.tolist()))
            self.frames.append(message.SerializeToString())
        return self.frames[seq]


def _check_pose(reply: pb.StreamLiftResponse, seq: int, problems: Problems) -> bool:
    """True if `reply` is the pose of frame `seq`; else the problem is counted."""
    kind = reply.WhichOneof("msg")
    if kind == "pose":
        joints = reply.pose.joints
        if reply.pose.seq == seq and len(joints) == POSE_VALUES and all(map(math.isfinite, joints)):
            return True
        problems.add("bad pose", f"seq {reply.pose.seq} (sent {seq}) with {len(joints)} values")
    elif kind == "error":
        problems.add(f"FrameError {reply.error.code}", f"seq {reply.error.seq}: {reply.error.message}")
    else:
        problems.add("unexpected reply", f"{kind} to frame {seq}")
    return False


async def _stream(
    channel: grpc.aio.Channel,
    messages: _Messages,
    spec: StreamSpec,
    index: int,
    clock: _Clock,
    out: StreamResult,
    rtts: list[float],
) -> None:
    """One session: open it, then send frames (paced or flat out) until `stop_at`, checking every reply."""
    call: grpc.aio.StreamStreamCall[bytes, pb.StreamLiftResponse] = open_stream(channel)  # takes bytes
    try:
        await call.write(messages.open)
        reply = await call.read()
        if not isinstance(reply, pb.StreamLiftResponse) or reply.WhichOneof("msg") != "session":
            out.problems.add("no session", f"stream {index} got {reply!r} to its open")
            return
        out.last_open_at = max(out.last_open_at, time.time())
        period = 1.0 / spec.fps if spec.fps else 0.0
        next_at = clock.first_slot(index, spec, period)
        seq = 0
        while time.perf_counter() < clock.stop:
            if period:  # a live camera: the next frame leaves at its slot; slots missed are dropped
                now = time.perf_counter()
                if now > next_at:
                    next_at += period * math.floor((now - next_at) / period)
                await asyncio.sleep(max(0.0, next_at - now))
                next_at += period
                if time.perf_counter() >= clock.stop:
                    break
            sent = time.perf_counter()
            await call.write(messages.frame(seq))
            out.sent += 1
            reply = await call.read()
            arrived = time.perf_counter()
            if not isinstance(reply, pb.StreamLiftResponse):  # EOF: the server ended the stream
                out.problems.add("stream ended", f"stream {index} at seq {seq}: {await call.details()}")
                return
            if _check_pose(reply, seq, out.problems):
                out.poses += 1
                if clock.start <= arrived < clock.stop:
                    rtts.append((arrived - sent) * 1e3)
            seq += 1
        await call.done_writing()
        if await call.read() is not grpc.aio.EOF:
            out.problems.add("unexpected reply", f"stream {index} after its last frame")
        code = await call.code()
        if code != grpc.StatusCode.OK:
            out.problems.add(f"stream status {code.name}", await call.details())
    except grpc.aio.AioRpcError as error:
        out.problems.add(f"stream aborted {error.code().name}", error.details() or "")


class _Clock:
    """The spec's absolute times (`time.time()`) on this process's `time.perf_counter()`."""

    def __init__(self, spec: StreamSpec | RestSpec):
        offset = time.perf_counter() - time.time()
        self.start = spec.start_at + offset
        self.stop = spec.stop_at + offset
        self.first = self.start - spec.warmup_s

    def first_slot(self, index: int, spec: StreamSpec, period: float) -> float:
        """The paced stream `index`'s first send time: phases spread evenly over one period, from the
        warm-up's start (or the first slot after now, for a stream that opened late)."""
        if not period:
            return 0.0
        slot = self.first + period * (spec.first_index + index) / spec.total_streams
        now = time.perf_counter()
        return slot if slot >= now else slot + period * math.ceil((now - slot) / period)


async def _bounded(clients: list[Coroutine[Any, Any, None]], stop: float, problems: Problems) -> None:
    """Run `clients` to their end, but cancel (and count) those still running `GRACE_S` after `stop`: the
    bench ends by itself even if a reply never comes."""
    tasks = [asyncio.ensure_future(client) for client in clients]
    _, hung = await asyncio.wait(tasks, timeout=max(0.0, stop - time.perf_counter()) + GRACE_S)
    for task in hung:
        task.cancel()
        problems.add("no reply", f"a client still waited {GRACE_S:g} s after the span ended")
    await asyncio.gather(*tasks, return_exceptions=True)


async def _cpu_in_span(clock: _Clock) -> float:
    """CPU seconds this process (all its threads) uses between the clock's start and stop, from /proc as
    the server's."""
    await asyncio.sleep(max(0.0, clock.start - time.perf_counter()))
    begin = cpu_seconds(os.getpid())
    await asyncio.sleep(max(0.0, clock.stop - time.perf_counter()))
    return cpu_seconds(os.getpid()) - begin


async def _run_streams(spec: StreamSpec) -> StreamResult:
    clock = _Clock(spec)
    messages = _Messages(spec.clip)
    messages.frame(int(max(spec.fps, 100) * (spec.stop_at - spec.start_at + spec.warmup_s)))  # build ahead
    out = StreamResult(np.zeros(0, np.float32))
    rtts: list[float] = []
    channels = [
        grpc.aio.insecure_channel(spec.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(math.ceil(spec.streams / spec.streams_per_channel))
    ]
    try:
        cpu = asyncio.ensure_future(_cpu_in_span(clock))
        streams = [
            _stream(channels[i // spec.streams_per_channel], messages, spec, i, clock, out, rtts)
            for i in range(spec.streams)
        ]
        await _bounded(streams, clock.stop, out.problems)
        out.cpu_s = await cpu
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    out.rtt_ms = np.asarray(rtts, np.float32)
    return out


def run_streams(spec: StreamSpec) -> StreamResult:
    """Run one process's StreamLift sessions to the end (the entry point of a worker process)."""
    return asyncio.run(_run_streams(spec))


@dataclass(frozen=True)
class RestSpec:
    """`/v1/lift` clients one worker process runs: each posts the clip again as soon as it has its answer."""

    url: str
    body: bytes  # the JSON body of one request
    frames: int  # frames per request
    clients: int
    warmup_s: float
    start_at: float
    stop_at: float


@dataclass
class RestResult:
    spans: list[tuple[float, float]]  # (sent, answered) of each correct answer, time.time()
    problems: Problems = field(default_factory=Problems)
    cpu_s: float = 0.0


async def _rest_client(spec: RestSpec, clock: _Clock, out: RestResult) -> None:
    async with httpx.AsyncClient(base_url=spec.url, timeout=120) as client:
        await asyncio.sleep(max(0.0, clock.first - time.perf_counter()))
        headers = {"content-type": "application/json"}
        offset = time.time() - time.perf_counter()
        while time.perf_counter() < clock.stop:
            sent = time.perf_counter()
            response = await client.post("/v1/lift", content=spec.body, headers=headers)
            answered = time.perf_counter()
            if response.status_code != 200:
                out.problems.add(f"HTTP {response.status_code}", response.text[:200])
                continue
            poses = orjson.loads(response.content)["poses"]  # orjson: the client's CPU is the server's too
            if len(poses) != spec.frames or any(len(pose) != 17 for pose in poses):
                out.problems.add("bad answer", f"{len(poses)} poses for {spec.frames} frames")
                continue
            out.spans.append((sent + offset, answered + offset))


async def _run_rest(spec: RestSpec) -> RestResult:
    clock = _Clock(spec)
    out = RestResult([])
    cpu = asyncio.ensure_future(_cpu_in_span(clock))
    await _bounded([_rest_client(spec, clock, out) for _ in range(spec.clients)], clock.stop, out.problems)
    out.cpu_s = await cpu
    return out


def run_rest(spec: RestSpec) -> RestResult:
    """Run one process's `/v1/lift` clients to the end (the entry point of a worker process)."""
    return asyncio.run(_run_rest(spec))


def warm() -> int:
    """Nothing: submitted once so a worker process has imported this module before the first scenario."""
    return 0
