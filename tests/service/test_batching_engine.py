"""The batching worker: concurrent requests share forward passes, results are split back exactly."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from poselift import Lifter
from service.engine import Engine
from service.errors import Unavailable


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (n, 5, 17, 2)).astype(np.float32), rng.uniform(0.2, 1, (n, 5, 17)).astype(
        np.float32
    )


def test_engine_groups_concurrent_requests_and_splits_results(lifter: Lifter) -> None:
    engine = Engine(lifter, max_batch=64, batch_wait_ms=50.0)
    requests = [windows(n, seed) for seed, n in enumerate([1, 3, 7, 2, 5])]
    engine.start()
    try:

        async def all_at_once() -> list[np.ndarray]:
            return list(await asyncio.gather(*[engine.lift_windows(w, s) for w, s in requests]))

        results = asyncio.run(all_at_once())
    finally:
        engine.stop()
    for (w, s), got in zip(requests, results, strict=True):
        np.testing.assert_allclose(got, lifter.lift_windows(w, s), rtol=0, atol=1e-3)
    batches = engine.metrics.batch_requests.collect()[0].samples
    count = next(sample.value for sample in batches if sample.name.endswith("_count"))
    assert count < len(requests)  # at least two requests shared a forward pass


def test_engine_oversize_request_runs_alone_and_whole(lifter: Lifter) -> None:
    engine = Engine(lifter, max_batch=4, batch_wait_ms=1.0)
    big, small = windows(11, 0), windows(2, 1)
    engine.start()
    try:

        async def both() -> list[np.ndarray]:
            return list(await asyncio.gather(engine.lift_windows(*big), engine.lift_windows(*small)))

        got_big, got_small = asyncio.run(both())
    finally:
        engine.stop()
    assert got_big.shape == (11, 17, 3) and got_small.shape == (2, 17, 3)
    np.testing.assert_allclose(got_big, lifter.lift_windows(*big), rtol=0, atol=1e-3)


def test_engine_not_started_is_unavailable(lifter: Lifter) -> None:
    with pytest.raises(Unavailable):
        asyncio.run(Engine(lifter).lift_windows(*windows(1, 0)))


def test_engine_failed_forward_fails_its_request_not_the_worker(lifter: Lifter) -> None:
    engine = Engine(lifter)
    engine.start()
    try:
        with pytest.raises(RuntimeError):  # wrong joint count reaches the model: its error, not a hang
            asyncio.run(
                engine.lift_windows(np.zeros((1, 5, 3, 2), np.float32), np.ones((1, 5, 3), np.float32))
            )
        assert engine.ready
        assert asyncio.run(engine.lift_windows(*windows(2, 0))).shape == (2, 17, 3)
    finally:
        engine.stop()
