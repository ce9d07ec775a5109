"""Parts of the soak test: a restartable redis-server with an fsynced append-only file, the chaos schedule,
a resuming StreamLift client per session, replica memory sampling, and the run's tally.

The client is written to the StreamLift contract only (docs/grpc.md): the first message opens or
resumes a session and is answered with `session` (its `last_seq`); every frame then gets exactly one reply,
in order; a resent frame the session already processed gets its stored pose again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc
from poselift_client.stream import RESUMABLE as CLIENT_RESUMABLE
from redis.crc import key_slot

from service.sessions import KeyLayout, cluster_tags
from tests.service.clusterkit import LoopbackCluster
from tests.service.rpc.rpckit import Replica, metric
from tests.service.testkit import TOLERANCE_MM, Clip, free_port, project_segment

J = 17
SEGMENTS = (12, 10, 11, 14, 13, 15, 16, 3, 9, 0)  # val segments (30..478 frames): walk, run, kick, navigate
REFUSED_IN_BAND = ("FAILED_PRECONDITION", "ABORTED")  # a FrameError that asks for a retry
# How a stream may end early and be resumed: poselift_client's one policy (docs/grpc.md). Any other status
# (NOT_FOUND for a session the store lost, ...) fails the soak. The soak is stricter than a client on one
# point, because it checks the server: INTERNAL (which the client resumes, as gRPC's own "Stream removed" when
# a connection dies) is accepted only from the replica it killed.
RESUMABLE = tuple(sorted(code.name for code in CLIENT_RESUMABLE))
STORE_GRACE_S = 2.0  # after Redis is back, replicas may still answer UNAVAILABLE while they reconnect
LOG_PROBLEMS = ("Traceback", "unhandled error")


class AofRedis:
    """redis-server with `appendonly yes`, `appendfsync always` (a write is on disk before it is answered)
    and no RDB snapshots, on a free loopback port; stopped with any signal and started again on the same port
    and directory, so the AOF reloads the sessions."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="poselift-soak-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--loglevel", "warning",
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.command(b"PING") == b"+PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log()}")

    def command(self, line: bytes) -> bytes | None:
        """One inline command's first reply line (None when Redis does not answer)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(line + b"\r\n")
                return sock.recv(256).split(b"\r\n")[0]
        except OSError:
            return None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: what `docker compose restart` sends (Redis flushes and exits); SIGKILL: a crash."""
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(30)
            self.process = None

    def restart(self, sig: signal.Signals, down_s: float) -> None:
        self.stop(sig)
        time.sleep(down_s)
        self.start()
        self.restarts[sig.name] += 1

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterStore:
    """The soak's store as a Redis Cluster on loopback (3 masters, 1 replica each; no persistence: a replica
    holds the data), with its chaos: a master failed over by its replica (`CLUSTER FAILOVER`, no write lost),
    or SIGKILLed (its replica takes over when the cluster marks it failed; writes it acknowledged in its last
    moment and had not yet replicated are lost, as Redis Cluster documents) and started again (it rejoins
    as a replica)."""

    def __init__(self) -> None:
        self.cluster = LoopbackCluster()
        self.restarts: Counter[str] = Counter()
        self.killed_slots: list[tuple[int, int]] = []  # slot ranges served by a master when it was killed
        self._turn = 0

    @property
    def url(self) -> str:
        return self.cluster.url

    def start(self) -> None:
        self.cluster.start()

    def act(self, action: str, down_s: float) -> str:
        """Run `action` on the next master in turn; what happened, for the timeline."""
        masters = sorted(self.cluster.masters(), key=lambda n: n.port)
        master = masters[self._turn % len(masters)]
        self._turn += 1
        if action == "cluster-failover":
            promoted = self.cluster.manual_failover(master)
            self.restarts[action] += 1
            return f"master {master.port} failed over to {promoted.port}"
        if action == "cluster-SIGKILL":
            self.killed_slots += self.cluster.slots_of(master)
            promoted = self.cluster.kill_master(master)
            took = f"{promoted.port} took over"
            time.sleep(down_s)
            self.cluster.restart(master)
            self.cluster.wait_healthy()
            self.restarts[action] += 1
            return f"master {master.port} SIGKILLed, {took}; it rejoined as a replica"
        raise ValueError(f"unknown soak event {action!r}")

    def on_killed_master(self, session_id: str) -> bool:
        """Whether the session was served by a master when it was killed."""
        slot = key_slot(KeyLayout(cluster_tags()).session(session_id).encode())
        return any(first <= slot <= last for first, last in self.killed_slots)

    def log(self) -> str:
        return self.cluster.log()

    def close(self) -> None:
        self.cluster.stop()


@dataclass(frozen=True)
class SoakConfig:
    sessions: int
    seconds: float
    fps: float = 10.0  # frames per second per session
    in_flight: int = 4  # frames sent and not answered, per session
    reply_timeout_s: float = 3.0
    redis_down_s: float = 1.0
    # (fraction of `seconds`, action): "redis-SIGTERM", "redis-SIGKILL", "replica-SIGKILL"; on a cluster
    # "cluster-failover", "cluster-SIGKILL" (`ClusterStore`)
    events: tuple[tuple[float, str], ...] = ()

    @classmethod
    def from_env(cls, sessions: int, seconds: float, **rest: Any) -> SoakConfig:
        """`POSELIFT_SOAK_SESSIONS`, `POSELIFT_SOAK_SECONDS` and `POSELIFT_SOAK_FPS` override the defaults."""
        return cls(
            sessions=int(os.environ.get("POSELIFT_SOAK_SESSIONS", sessions)),
            seconds=float(os.environ.get("POSELIFT_SOAK_SECONDS", seconds)),
            fps=float(os.environ.get("POSELIFT_SOAK_FPS", rest.pop("fps", 10.0))),
            **rest,
        )

    @property
    def frames(self) -> int:
        """Frames each session streams."""
        return max(1, round(self.seconds * self.fps))


def session_clip(index: int, frames: int) -> Clip:
    """Session `index`'s keypoints: a val segment seen from its own azimuth, played forward and back
    (ping-pong, no jump) until `frames` frames."""
    segment = SEGMENTS[index % len(SEGMENTS)]
    base = project_segment(segment, azimuth_deg=30.0 + 47.0 * index)
    length = len(base.keypoints_px)
    cycle = [*range(length), *range(length - 2, 0, -1)] or [0]
    order = [cycle[k % len(cycle)] for k in range(frames)]
    return Clip(np.asarray(base.keypoints_px[order], np.float32))


@dataclass
class Timeline:
    """What the chaos did when (monotonic seconds), to tell a refusal from a broken stream."""

    store_down: list[list[float]] = field(default_factory=list)  # [went down, back up (inf while down)]
    dead: set[int] = field(default_factory=set)  # replica indices killed
    notes: list[str] = field(default_factory=list)

    def store_was_down(self, at: float) -> bool:
        return any(down <= at <= up + STORE_GRACE_S for down, up in self.store_down)


@dataclass
class Tally:
    """Counters over every session."""

    sent: int = 0  # frame messages, resends included
    resent: int = 0  # frame messages for a seq sent before on an earlier stream
    retried_after_refusal: int = 0  # of those, frames whose earlier send was refused
    refused: Counter[str] = field(default_factory=Counter)  # by code
    breaks: Counter[str] = field(default_factory=Counter)  # broken streams, by code
    opens: int = 0
    resumes: int = 0
    duplicates: int = 0  # poses for a seq answered before (a resend across a break): must be equal
    inconsistent: int = 0  # such a pose differing from the first one
    regressions: int = 0  # a resume whose last_seq is below a seq already answered (acknowledged data lost)
    regressed: set[int] = field(default_factory=set)  # the sessions (indices) of those resumes
    failures: list[str] = field(default_factory=list)  # contract violations (out of order, odd replies)
    rtt_ms: list[float] = field(default_factory=list)  # first answers only


class SoakFailure(Exception):
    """The server broke the contract; the session stops."""


class _Broken(Exception):
    def __init__(self, code: str, details: str = ""):
        super().__init__(f"{code}: {details}")
        self.code = code


class SoakSession:
    """One camera's stream: paced frames, at most `in_flight` unanswered, resumed on the other replica when
    the stream breaks, every frame without an answer resent, until every seq has its pose."""

    def __init__(
        self,
        index: int,
        clip: Clip,
        config: SoakConfig,
        stubs: Sequence[pb_grpc.PoseLifterStub],
        tally: Tally,
        timeline: Timeline,
        start_at: float,
    ):
        self.index, self.clip, self.config = index, clip, config
        self.stubs, self.tally, self.timeline = stubs, tally, timeline
        self.start_at = start_at
        self.total = len(clip.keypoints_px)
        self.answered: dict[int, np.ndarray] = {}  # seq -> (17, 3) mm
        self.session_id = ""
        self.target = index % len(stubs)
        self._first_unanswered = 0
        self._ever_sent: set[int] = set()
        self._refused: set[int] = set()
        self._sent_at: dict[int, float] = {}
        self._random = random.Random(index)

    def camera(self) -> pb.Camera:
        return pb.Camera(
            width=self.clip.width, height=self.clip.height, fps=self.clip.fps, layout=pb.LAYOUT_H36M17
        )

    def message(self, seq: int) -> pb.StreamLiftRequest:
        keypoints = self.clip.keypoints_px[seq].reshape(-1).tolist()
        return pb.StreamLiftRequest(frame=pb.Frame(seq=seq, keypoints=keypoints))

    async def run(self) -> None:
        await asyncio.sleep(max(0.0, self.start_at - time.monotonic()))
        failures_in_row = 0
        while len(self.answered) < self.total:
            before = len(self.answered)
            outcome = await self._attempt()
            if outcome == "done":
                continue
            failures_in_row = 1 if len(self.answered) > before else failures_in_row + 1
            if failures_in_row > 400:
                raise SoakFailure(f"session {self.index}: 400 attempts in a row answered nothing")
            if outcome == "refused":  # the store is down: back off, then retry (on the other replica)
                await asyncio.sleep(0.2 + 0.2 * self._random.random())
            else:
                await asyncio.sleep(0.02 + 0.03 * self._random.random())

    async def _attempt(self) -> str:
        """One stream; "done", "refused" or "broken"."""
        stub = self.stubs[self.target]
        target = self.target
        self.target = (self.target + 1) % len(self.stubs)  # the next attempt goes to the other replica
        call = stub.StreamLift()
        pending: deque[int] = deque()
        sender: asyncio.Task[None] | None = None
        began = False  # the session reply came: a failure after it broke a running stream
        try:
            if self.session_id:
                await call.write(pb.StreamLiftRequest(resume_session_id=self.session_id))
            else:
                await call.write(pb.StreamLiftRequest(open=self.camera()))
            reply = await self._read(call)
            if reply.WhichOneof("msg") != "session":
                raise SoakFailure(f"session {self.index}: first reply is not `session`: {reply}")
            start = self._begin(reply.session)
            began = True
            window = asyncio.Semaphore(self.config.in_flight)
            sender = asyncio.create_task(self._send(call, start, pending, window))
            for _ in range(start, self.total):
                reply = await self._read(call)
                window.release()
                if not pending:
                    raise SoakFailure(f"session {self.index}: a reply with no frame in flight: {reply}")
                if not self._answer(pending.popleft(), reply):
                    return "refused"
            await sender
            code = await call.code()
            if code != grpc.StatusCode.OK:  # every frame was answered; the end itself is only noted
                self.tally.breaks[f"{code.name} after the last reply"] += 1
            return "done"
        except grpc.aio.AioRpcError as error:
            broken = _Broken(error.code().name, error.details() or "")
        except _Broken as error:
            broken = error
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            call.cancel()
        # A connection cut by the SIGKILL can also surface as INTERNAL from the client's own gRPC core (it was
        # reading a frame when the socket died: "Internal error from Core"). Only on the killed replica: an
        # INTERNAL from a live one fails the run, and any INTERNAL our servicer sends is logged (LOG_PROBLEMS)
        from_live = broken.code == "INTERNAL" and target not in self.timeline.dead
        if broken.code not in RESUMABLE or from_live:
            raise SoakFailure(f"session {self.index}: the stream ended with {broken}")
        when = "mid-stream" if began else "before the session reply"
        if target in self.timeline.dead:
            self.tally.breaks[f"{broken.code} {when}, replica killed"] += 1
            return "broken"
        if broken.code == "UNAVAILABLE" and self.timeline.store_was_down(time.monotonic()):
            self.tally.refused[f"UNAVAILABLE {when}, store down"] += 1
            if pending:
                self._refused.add(pending[0])  # the frame the server was working on
            return "refused"
        self.tally.breaks[f"{broken.code} {when}"] += 1
        return "broken"

    def _begin(self, info: pb.SessionInfo) -> int:
        """Take the session reply; the first seq to send (every frame without an answer, and whatever the
        store no longer holds)."""
        if self.session_id:
            if info.session_id != self.session_id:
                raise SoakFailure(f"session {self.index}: resumed {info.session_id}, not {self.session_id}")
            self.tally.resumes += 1
            if self.answered and info.last_seq < max(self.answered):
                self.tally.regressions += 1
                self.tally.regressed.add(self.index)
                self.timeline.notes.append(
                    f"session {self.index} resumed with last_seq {info.last_seq}, "
                    f"below the answered seq {max(self.answered)}"
                )
        else:
            self.session_id = info.session_id
            self.tally.opens += 1
        while self._first_unanswered in self.answered:
            self._first_unanswered += 1
        return min(self._first_unanswered, int(info.last_seq) + 1)

    async def _send(self, call: Any, start: int, pending: deque[int], window: asyncio.Semaphore) -> None:
        for seq in range(start, self.total):
            await asyncio.sleep(max(0.0, self.start_at + seq / self.config.fps - time.monotonic()))
            await window.acquire()
            self.tally.sent += 1
            if seq in self._ever_sent:
                self.tally.resent += 1
                if seq in self._refused:
                    self.tally.retried_after_refusal += 1
                    self._refused.discard(seq)
            self._ever_sent.add(seq)
            self._sent_at.setdefault(seq, time.perf_counter())
            pending.append(seq)
            await call.write(self.message(seq))
        await call.done_writing()

    def _answer(self, seq: int, reply: pb.StreamLiftResponse) -> bool:
        """Record the reply to frame `seq`; False when the frame was refused (retry it)."""
        kind = reply.WhichOneof("msg")
        if kind == "pose":
            if reply.pose.seq != seq:
                raise SoakFailure(f"session {self.index}: pose for seq {reply.pose.seq}, expected {seq}")
            pose = np.asarray(reply.pose.joints, np.float32).reshape(J, 3)
            if seq in self.answered:
                self.tally.duplicates += 1
                if not np.allclose(pose, self.answered[seq], rtol=0, atol=TOLERANCE_MM):
                    self.tally.inconsistent += 1
            else:
                self.answered[seq] = pose
                self.tally.rtt_ms.append((time.perf_counter() - self._sent_at[seq]) * 1000.0)
            return True
        if kind == "error" and reply.error.seq == seq and reply.error.code in REFUSED_IN_BAND:
            self.tally.refused[reply.error.code] += 1
            self._refused.add(seq)
            return False
        raise SoakFailure(f"session {self.index}: unexpected reply to seq {seq}: {reply}")

    async def _read(self, call: Any) -> pb.StreamLiftResponse:
        try:
            reply = await asyncio.wait_for(call.read(), self.config.reply_timeout_s)
        except TimeoutError:
            raise _Broken("DEADLINE_EXCEEDED", "no reply within the client's reply timeout") from None
        if reply is grpc.aio.EOF:
            code = await call.code()
            raise _Broken(
                code.name if code != grpc.StatusCode.OK else "OK (ended before every frame was answered)",
                await call.details() or "",
            )
        assert isinstance(reply, pb.StreamLiftResponse)
        return reply


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    """Resident set size of process `pid` in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


async def sample_rss(
    replicas: Sequence[Replica],
    samples: list[tuple[float, int, float]],
    every_s: float,
    timeline: Timeline,
    t0: float,
) -> None:
    """Append (monotonic s, replica index, RSS MB) for every live replica every `every_s` until cancelled;
    note when a replica the chaos did not kill exits."""
    gone: set[int] = set()
    while True:
        for index, replica in enumerate(replicas):
            if replica.process.poll() is None:
                if (mb := rss_mb(replica.process.pid)) is not None:
                    samples.append((time.monotonic(), index, mb))
            elif index not in gone and index not in timeline.dead:
                gone.add(index)
                timeline.notes.append(
                    f"t={time.monotonic() - t0:.1f}s replica {index} exited by itself "
                    f"(return code {replica.process.returncode})"
                )
        await asyncio.sleep(every_s)


async def chaos(
    config: SoakConfig,
    t0: float,
    redis: AofRedis | ClusterStore,
    replicas: Sequence[Replica],
    timeline: Timeline,
    killed: list[int],
) -> None:
    """Run the configured events at their times: Redis stopped (SIGTERM or SIGKILL) and started again on the
    same port and directory, a cluster master failed over or killed, or a replica SIGKILLed (the first one not
    killed yet)."""
    for fraction, action in sorted(config.events):
        await asyncio.sleep(max(0.0, t0 + fraction * config.seconds - time.monotonic()))
        if action.startswith("cluster-"):
            assert isinstance(redis, ClusterStore)
            span = [time.monotonic(), float("inf")]
            timeline.store_down.append(span)  # a third of the sessions may be refused meanwhile
            note = await asyncio.to_thread(redis.act, action, config.redis_down_s)
            span[1] = time.monotonic()
            timeline.notes.append(f"t={span[0] - t0:.1f}s {note} (done after {span[1] - span[0]:.1f}s)")
        elif action.startswith("redis-"):
            assert isinstance(redis, AofRedis)
            sig = signal.Signals[action.removeprefix("redis-")]
            span = [time.monotonic(), float("inf")]
            timeline.store_down.append(span)
            await asyncio.to_thread(redis.restart, sig, config.redis_down_s)
            span[1] = time.monotonic()
            timeline.notes.append(
                f"t={span[0] - t0:.1f}s redis {sig.name}, back after {span[1] - span[0]:.1f}s"
            )
        elif action == "replica-SIGKILL":
            index = next(i for i in range(len(replicas)) if i not in killed)
            streams = await asyncio.to_thread(metric, replicas[index].url, "poselift_open_streams")
            timeline.dead.add(index)
            replicas[index].process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(replicas[index].process.wait, 10)
            killed.append(index)
            timeline.notes.append(
                f"t={time.monotonic() - t0:.1f}s replica {index} SIGKILLed with {streams} open streams"
            )
        else:
            raise ValueError(f"unknown soak event {action!r}")


def log_problems(text: str) -> list[str]:
    """Lines of a replica log that mean a bug: tracebacks and unhandled errors."""
    return [line for line in text.splitlines() if any(p in line for p in LOG_PROBLEMS)]


def write_report(summary: dict[str, Any]) -> None:
    """Print the summary (visible with -s) and write it as JSON to `POSELIFT_SOAK_REPORT` if set."""
    print("\nsoak summary:\n" + json.dumps(summary, indent=2))
    if path := os.environ.get("POSELIFT_SOAK_REPORT"):
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")
