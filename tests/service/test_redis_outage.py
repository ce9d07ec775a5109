"""Redis outages over real HTTP: 503 within 2 s while it is down, not ready, recovery without a restart."""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np

from poselift import Lifter
from service.api import create_app
from tests.service.testkit import (
    TOLERANCE_MM,
    Clip,
    LiveServer,
    RedisServer,
    frames_body,
    make_settings,
    open_session,
    push_in_batches,
)

DEADLINE_S = 2.0


def timed(call: httpx.Client, method: str, url: str, **kw: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call.request(method, url, **kw)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def test_outage_redis_stopped_503_fast_then_recovers(
    own_redis: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    settings = make_settings(redis_url=own_redis.url)
    seqs = list(range(len(clip.keypoints_px)))
    with (
        LiveServer(create_app(settings, lifter)) as live,
        httpx.Client(base_url=live.url, timeout=10) as client,
    ):
        session_id, _ = push_in_batches(client, clip, 4, stop=8)
        own_redis.stop()
        for method, url, body in [
            ("POST", f"/v1/sessions/{session_id}/frames", frames_body(clip, seqs, range(8, 12))),
            ("GET", f"/v1/sessions/{session_id}", None),
            ("POST", "/v1/sessions", clip.camera()),
            ("DELETE", f"/v1/sessions/{session_id}", None),
            ("GET", "/readyz", None),
        ]:
            response, took = timed(client, method, url, json=body)
            assert response.status_code == 503, (url, response.text)
            assert response.json()["error"]["code"] in ("store_unavailable", "unavailable")
            assert took < DEADLINE_S, (url, took)
        assert client.get("/healthz").status_code == 200  # the process is fine, only not ready
        assert client.post(
            "/v1/lift", json={**clip.camera(), "keypoints": clip.keypoints_px[:5].tolist()}
        ).is_success
        assert 'poselift_store_errors_total{operation="load"}' in client.get("/metrics").text

        own_redis.start()  # same port, empty (no persistence): the app reconnects by itself
        assert client.get("/readyz").status_code == 200
        _, poses = push_in_batches(client, clip, 7)
        offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
        np.testing.assert_allclose(poses, offline, rtol=0, atol=TOLERANCE_MM)


def test_outage_redis_frozen_times_out_then_session_continues(
    own_redis: RedisServer, lifter: Lifter, clip: Clip
) -> None:
    # A frozen Redis (SIGSTOP) accepts connections but never answers: only the time bounds help.
    settings = make_settings(redis_url=own_redis.url, store_timeout_s=0.5)
    seqs = list(range(len(clip.keypoints_px)))
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    assert own_redis.process is not None
    pid = own_redis.process.pid
    with (
        LiveServer(create_app(settings, lifter)) as live,
        httpx.Client(base_url=live.url, timeout=10) as client,
    ):
        session_id = open_session(client, clip)
        _, head = push_in_batches(client, clip, 4, session_id=session_id, stop=8)
        os.kill(pid, signal.SIGSTOP)
        try:
            batch = frames_body(clip, seqs, range(8, 12))
            response, took = timed(client, "POST", f"/v1/sessions/{session_id}/frames", json=batch)
            assert response.status_code == 503 and took < DEADLINE_S, (response.text, took)
            response, took = timed(client, "GET", "/readyz")
            assert response.status_code == 503 and took < DEADLINE_S, (response.text, took)
        finally:
            os.kill(pid, signal.SIGCONT)
        # The client retries the refused batch (it may or may not have been committed): same poses either way.
        _, tail = push_in_batches(client, clip, 4, session_id=session_id, start=8)
        assert client.get("/readyz").status_code == 200
        status = client.get(f"/v1/sessions/{session_id}").json()
    np.testing.assert_allclose(np.concatenate([head, tail]), offline, rtol=0, atol=TOLERANCE_MM)
    assert status["frames_seen"] == len(clip.keypoints_px)
