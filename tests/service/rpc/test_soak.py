"""Soak: many sessions stream over gRPC through two `poselift serve` replicas on one redis-server (its
append-only file fsynced on every write) while Redis is restarted and a replica is SIGKILLed. Every frame of
every session is answered exactly once per seq with the pose an uninterrupted offline run gives; no replica
crashes but the one killed, none logs a traceback, and the survivor's memory stays flat.

On a Redis Cluster (3 masters with a replica each) instead, a master is failed over by its replica
(`CLUSTER FAILOVER`) and another one SIGKILLed: the same checks hold, except that a session served by the
killed master may resume below a seq it was answered (Redis Cluster replicates asynchronously: the master's
last acknowledged writes may not have reached the replica that took over); its client resends those frames and
gets the same poses again, so no pose is wrong and the store ends holding every frame once.

The short versions run in `make test`; the full one (64 sessions, 60 s) only in `make soak`. The full one
reads `POSELIFT_SOAK_SESSIONS`, `POSELIFT_SOAK_SECONDS` and `POSELIFT_SOAK_FPS`, and runs on a cluster with
`POSELIFT_SOAK_CLUSTER=1`; every version prints its summary (`-s`) and writes it as JSON to
`POSELIFT_SOAK_REPORT` when set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

from poselift import Lifter
from service.api import create_app
from tests.service.rpc.rpckit import Replica
from tests.service.rpc.soakkit import (
    AofRedis,
    ClusterStore,
    SoakConfig,
    SoakFailure,
    SoakSession,
    Tally,
    Timeline,
    chaos,
    cpu_s,
    log_problems,
    sample_rss,
    session_clip,
    write_report,
)
from tests.service.testkit import TOLERANCE_MM, Clip, LiveServer, make_settings

REPLICAS = 2
# The survivor's RSS may grow this much over the second half of the run (after warm-up and after it took
# over the killed replica's streams); a leak of even a few kB per frame exceeds it in the full run.
RSS_GROWTH_LIMIT_MB, RSS_GROWTH_LIMIT_FRACTION = 40.0, 0.10

SHORT = SoakConfig(
    sessions=8, seconds=12.0, fps=20.0, events=((0.3, "replica-SIGKILL"), (0.6, "redis-SIGTERM"))
)
CLUSTER_SHORT = SoakConfig(
    sessions=6, seconds=12.0, fps=10.0, events=((0.2, "cluster-failover"), (0.45, "cluster-SIGKILL"))
)
ON_CLUSTER = os.environ.get("POSELIFT_SOAK_CLUSTER", "") == "1"
FULL = SoakConfig.from_env(
    sessions=64,
    seconds=60.0,
    fps=10.0,
    events=(
        ((0.2, "cluster-failover"), (0.35, "replica-SIGKILL"), (0.65, "cluster-SIGKILL"))
        if ON_CLUSTER
        else ((0.2, "redis-SIGTERM"), (0.35, "replica-SIGKILL"), (0.65, "redis-SIGKILL"))
    ),
)


@dataclass
class Streamed:
    sessions: list[SoakSession]
    tally: Tally
    timeline: Timeline
    killed: list[int]
    rss: list[tuple[float, int, float]]  # (monotonic s, replica index, MB)
    t0: float
    took_s: float
    unfinished: list[str] = field(default_factory=list)


async def stream_all(
    config: SoakConfig, clips: list[Clip], replicas: list[Replica], redis: AofRedis | ClusterStore
) -> Streamed:
    """Every session streams its clip while the chaos runs; returns once every frame is answered (or the
    run's deadline passed)."""
    tally, timeline = Tally(), Timeline()
    killed: list[int] = []
    rss: list[tuple[float, int, float]] = []
    channels = [grpc.aio.insecure_channel(r.target) for r in replicas]
    stubs = [pb_grpc.PoseLifterStub(channel) for channel in channels]
    t0 = time.monotonic() + 0.2
    spread_s = 1.0 / config.fps  # session starts spread over one frame interval
    sessions = [
        SoakSession(i, clip, config, stubs, tally, timeline, t0 + spread_s * i / config.sessions)
        for i, clip in enumerate(clips)
    ]
    sampler = asyncio.create_task(sample_rss(replicas, rss, max(0.5, config.seconds / 30), timeline, t0))
    chaos_task = asyncio.create_task(chaos(config, t0, redis, replicas, timeline, killed))
    runs = [asyncio.create_task(s.run()) for s in sessions]
    done, late = await asyncio.wait(runs, timeout=config.seconds * 1.5 + 30)
    took_s = time.monotonic() - t0
    unfinished = [
        f"session {s.index}: {len(s.answered)}/{s.total} answered"
        for s, r in zip(sessions, runs, strict=True)
        if r in late
    ]
    for run in late:
        run.cancel()
    for run in done:
        if isinstance(error := run.exception(), SoakFailure):
            tally.failures.append(str(error))
        elif error is not None:
            raise error
    await chaos_task
    sampler.cancel()
    await asyncio.gather(sampler, *late, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return Streamed(sessions, tally, timeline, killed, rss, t0, took_s, unfinished)


def rss_figures(run: Streamed, index: int, seconds: float) -> dict[str, float]:
    """First, mid-run and last RSS (MB) of replica `index`, and the growth over the second half."""
    samples = [(t - run.t0, mb) for t, i, mb in run.rss if i == index]
    assert samples, "no RSS samples of the surviving replica"
    mid = min(samples, key=lambda s: abs(s[0] - seconds / 2))[1]
    last = samples[-1][1]
    return {
        "first_mb": round(samples[0][1], 1),
        "mid_mb": round(mid, 1),
        "last_mb": round(last, 1),
        "max_mb": round(max(mb for _, mb in samples), 1),
        "growth_second_half_mb": round(last - mid, 1),
        "samples": len(samples),
    }


def run_soak(config: SoakConfig, lifter: Lifter, keep: Path, cluster: bool = False) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    started = time.monotonic()
    redis = ClusterStore() if cluster else AofRedis()
    replicas: list[Replica] = []
    try:
        redis.start()
        replicas = [Replica(redis.url) for _ in range(REPLICAS)]
        for replica in replicas:
            replica.wait_ready()
        startup_s = time.monotonic() - started
        clips = [session_clip(i, config.frames) for i in range(config.sessions)]
        run = asyncio.run(stream_all(config, clips, replicas, redis))
        survivors = [r for i, r in enumerate(replicas) if i not in run.killed]

        # What Redis holds, read by a fresh server (no replica's cache): every frame entered once.
        stored_wrong = []
        with (
            LiveServer(create_app(make_settings(redis_url=redis.url), lifter)) as fresh,
            httpx.Client(base_url=fresh.url, timeout=10) as http,
        ):
            for s in run.sessions:
                if not s.session_id:
                    stored_wrong.append(f"session {s.index}: never opened")
                    continue
                status = http.get(f"/v1/sessions/{s.session_id}").json()
                if (status.get("frames_seen"), status.get("last_seq")) != (s.total, s.total - 1):
                    stored_wrong.append(f"session {s.index}: {status}")

        cpu = {f"replica_{i}": round(v, 1) for i, r in enumerate(replicas) if (v := cpu_s(r.process.pid))}
        # No crash: the survivors are still up and stop gracefully (exit 0); the killed one died of SIGKILL.
        alive_at_end = [r.process.poll() is None for r in survivors]
        for replica in survivors:
            replica.process.send_signal(signal.SIGTERM)
        codes = [r.process.wait(30) for r in replicas]
        expected = [-signal.SIGKILL if i in run.killed else 0 for i in range(REPLICAS)]
        crashes = sum(code != want for code, want in zip(codes, expected, strict=True)) + alive_at_end.count(
            False
        )
        logs = [r.output() for r in replicas]
        for i, text in enumerate(logs):
            (keep / f"replica-{i}.log").write_text(text)
        (keep / "redis.log").write_text(redis.log())
        problems = [f"replica {i}: {line}" for i, text in enumerate(logs) for line in log_problems(text)]

        # Every answered pose against the offline reference of the same pixels.
        wrong, answered, missing = 0, 0, 0
        worst_mm = 0.0
        for s in run.sessions:
            kp = s.clip.keypoints_px.astype(np.float64)
            reference = lifter.lift(kp, s.clip.width, s.clip.height, s.clip.fps)  # (T, 17, 3)
            seqs = sorted(s.answered)
            answered += len(seqs)
            missing += s.total - len(seqs)
            if seqs:
                error_mm = np.abs(np.stack([s.answered[q] for q in seqs]) - reference[seqs]).max(axis=(1, 2))
                wrong += int((error_mm > TOLERANCE_MM).sum())
                worst_mm = max(worst_mm, float(error_mm.max()))

        # A regression is only explained by a killed cluster master that had not replicated its last writes.
        lossy = {
            i for i in run.tally.regressed
            if isinstance(redis, ClusterStore) and redis.on_killed_master(run.sessions[i].session_id)
        }  # fmt: skip
        unexplained = run.tally.regressed - lossy
        survivor = next(i for i in range(REPLICAS) if i not in run.killed)
        memory = rss_figures(run, survivor, config.seconds)
        rtt = np.asarray(run.tally.rtt_ms) if run.tally.rtt_ms else np.zeros(1)
        tally = run.tally
        summary: dict[str, Any] = {
            "sessions": config.sessions,
            "seconds": config.seconds,
            "fps_per_session": config.fps,
            "frames_per_session": config.frames,
            "startup_s": round(startup_s, 1),
            "streaming_s": round(run.took_s, 1),
            "frames_expected": config.sessions * config.frames,
            "frames_sent": tally.sent,
            "frames_answered": answered,
            "missing": missing,
            "retried": tally.resent,
            "retried_detail": {
                "resent_after_broken_or_refused_stream": tally.resent - tally.retried_after_refusal,
                "retried_after_refusal": tally.retried_after_refusal,
            },
            "refused": dict(tally.refused),
            "broken_streams": dict(tally.breaks),
            "opens": tally.opens,
            "resumes": tally.resumes,
            "duplicate_answers": tally.duplicates,
            "inconsistent_duplicates": tally.inconsistent,
            "regressions": tally.regressions,
            "regressed_sessions_on_a_killed_master": len(lossy),
            "wrong": wrong,
            "worst_error_mm": worst_mm,
            "crashes": crashes,
            "return_codes": codes,
            "log_problems": len(problems),
            "stored_wrong": len(stored_wrong),
            "failures": tally.failures,
            "unfinished": run.unfinished,
            f"replica_{survivor}_rss": memory,
            "store": "redis cluster (3 masters, 3 replicas)" if cluster else "redis-server, fsynced AOF",
            "redis_restarts": dict(redis.restarts),
            "replicas_killed": len(run.killed),
            "rtt_ms_p50_p99_max": [round(float(v), 1) for v in (*np.percentile(rtt, [50, 99]), rtt.max())],
            "events": run.timeline.notes,
            "cpu_s_survivors": cpu,
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
            "logs": str(keep),
        }
        write_report(summary)
    finally:
        for replica in replicas:
            replica.stop()
        redis.close()

    assert not tally.failures, (tally.failures[:5], run.timeline.notes)
    assert not run.unfinished, (run.unfinished[:5], run.timeline.notes)
    assert missing == 0 and answered == config.sessions * config.frames
    assert wrong == 0, f"{wrong} poses differ from the offline run by more than {TOLERANCE_MM} mm"
    assert tally.inconsistent == 0 and not unexplained, (tally.inconsistent, run.timeline.notes)
    assert not stored_wrong, stored_wrong[:5]
    assert crashes == 0, (codes, alive_at_end)
    assert not problems, problems[:20]
    assert len(run.killed) == sum(a == "replica-SIGKILL" for _, a in config.events)
    assert sum(redis.restarts.values()) == sum(a.startswith(("redis-", "cluster-")) for _, a in config.events)
    assert tally.resumes > 0, "no stream was resumed"
    if run.killed:
        assert any("mid-stream, replica killed" in k for k in tally.breaks), (
            "the kill broke no running stream"
        )
    if any(a.startswith(("redis-", "cluster-SIGKILL")) for _, a in config.events):
        assert tally.refused, "no push was refused while Redis was down"
    growth = memory["growth_second_half_mb"]
    limit = min(RSS_GROWTH_LIMIT_MB, RSS_GROWTH_LIMIT_FRACTION * memory["mid_mb"])
    assert growth < limit, f"the survivor's RSS grew {growth} MB over the second half (limit {limit:.0f})"


@pytest.mark.slow
def test_soak_short_redis_restart_and_replica_kill(lifter: Lifter, tmp_path: Path) -> None:
    run_soak(SHORT, lifter, tmp_path)


@pytest.mark.slow
def test_soak_short_cluster_master_failover_and_master_kill(lifter: Lifter, tmp_path: Path) -> None:
    run_soak(CLUSTER_SHORT, lifter, tmp_path, cluster=True)


@pytest.mark.soak
@pytest.mark.timeout(FULL.seconds * 2 + 300)
def test_soak_full_two_redis_restarts_and_replica_kill(lifter: Lifter, tmp_path: Path) -> None:
    """Two Redis restarts (on a cluster, `POSELIFT_SOAK_CLUSTER=1`: a master failover and a master kill) and
    a replica kill."""
    run_soak(FULL, lifter, tmp_path, cluster=ON_CLUSTER)
