"""Serving on a CUDA device: the batching engine and REST /v1/lift give the CPU's poses. Marked `cuda`:
skipped without a CUDA device; run on a GPU machine by `python -m bench.gpu_check` (or `pytest -m cuda`)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch

from poselift import Lifter, load_lifter
from service.engine import Engine, load_model
from tests.service.testkit import CHECKPOINT, Clip, lift_rest, make_settings, serve

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
MAX_MM = 1.0  # TF32 convolutions and another summation order (tests/poselift/test_cuda.py)


@pytest.fixture(scope="module")
def gpu_lifter() -> Lifter:
    lifter = load_model(make_settings(device="cuda", backend="auto"))
    assert lifter.device.type == "cuda" and lifter.backend == "torch"
    return lifter


def test_cuda_engine_batches_concurrent_requests_like_the_cpu(gpu_lifter: Lifter, lifter: Lifter) -> None:
    rng = np.random.default_rng(0)
    window = gpu_lifter.window
    requests = [
        (rng.normal(0, 0.3, (n, window, 17, 2)).astype(np.float32), np.ones((n, window, 17), np.float32))
        for n in (1, 5, 64, 3)
    ]
    engine = Engine(gpu_lifter, max_batch=64, batch_wait_ms=20.0)
    engine.start()
    try:

        async def all_at_once() -> list[np.ndarray]:
            return list(await asyncio.gather(*[engine.lift_windows(w, s) for w, s in requests]))

        results = asyncio.run(all_at_once())
    finally:
        engine.stop()
    for (windows, scores), result in zip(requests, results, strict=True):
        assert result.shape == (len(windows), 17, 3)
        np.testing.assert_allclose(result, lifter.lift_windows(windows, scores), rtol=0, atol=MAX_MM)


def test_cuda_rest_lift_matches_the_cpu(
    gpu_lifter: Lifter, clip: Clip, request: pytest.FixtureRequest
) -> None:
    with (
        serve(request, "memory", gpu_lifter, device="cuda") as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert http.get("/v1/model").json()  # the model endpoint answers on a CUDA replica
        on_gpu = lift_rest(http, clip)
    on_cpu = load_lifter(CHECKPOINT, "cpu", backend="torch").lift(
        clip.keypoints_px, clip.width, clip.height, clip.fps
    )
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=MAX_MM)
