"""The batching worker: concurrent requests share forward passes, results are split back exactly."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

import numpy as np
import pytest

from poselift import Lifter
from poselift.checkpoint import read_metadata, resolve
from service.engine import INLINE_MAX_WINDOWS, Engine
from service.errors import Unavailable
from tests.service.testkit import CHECKPOINT, TOLERANCE_MM

WINDOW = int(read_metadata(resolve(CHECKPOINT))["config"]["window"])  # the test checkpoint's window


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (n, WINDOW, 17, 2)).astype(np.float32), rng.uniform(
        0.2, 1, (n, WINDOW, 17)
    ).astype(np.float32)


def sample(engine: Engine, name: str, **labels: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class GatedLifter:
    """The real lifter, but every forward pass first waits for `gate` (so requests pile up in the queue)."""

    def __init__(self, lifter: Lifter):
        self.lifter = lifter
        self.gate = threading.Event()
        self.passes = 0
        self.sizes: list[int] = []  # windows of each pass, in order

    @property
    def window(self) -> int:
        return self.lifter.window

    def run_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> Any:
        assert self.gate.wait(30), "the test never opened the gate"
        self.passes += 1
        self.sizes.append(len(windows_norm))
        return self.lifter.run_windows(windows_norm, scores)


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
        np.testing.assert_allclose(got, lifter.lift_windows(w, s), rtol=0, atol=TOLERANCE_MM)
    assert sample(engine, "poselift_batch_requests_count") < len(requests)  # some shared a forward pass


def test_engine_oversize_request_runs_alone_and_whole(lifter: Lifter) -> None:
    # The wait is long: had the engine let the two share a pass (or split the big one), they would have.
    engine = Engine(lifter, max_batch=4, batch_wait_ms=100.0)
    big, small = windows(11, 0), windows(2, 1)
    engine.start()
    try:

        async def both() -> list[np.ndarray]:
            return list(await asyncio.gather(engine.lift_windows(*big), engine.lift_windows(*small)))

        got_big, got_small = asyncio.run(both())
    finally:
        engine.stop()
    assert got_big.shape == (11, 17, 3) and got_small.shape == (2, 17, 3)
    np.testing.assert_allclose(got_big, lifter.lift_windows(*big), rtol=0, atol=TOLERANCE_MM)
    np.testing.assert_allclose(got_small, lifter.lift_windows(*small), rtol=0, atol=TOLERANCE_MM)
    # Exactly two passes: one of the 2 small windows, one of all 11 big ones (the buckets are 1, 2, 4, 8, 16).
    assert sample(engine, "poselift_batch_windows_count") == 2
    assert sample(engine, "poselift_batch_windows_sum") == 13
    assert sample(engine, "poselift_batch_windows_bucket", le="2.0") == 1
    assert sample(engine, "poselift_batch_windows_bucket", le="8.0") == 1  # the big one is not in here...
    assert sample(engine, "poselift_batch_windows_bucket", le="16.0") == 2  # ...but whole in one pass
    assert sample(engine, "poselift_batch_requests_sum") == 2  # one request per pass


def test_engine_answers_live_windows_before_a_clip_piece_batched_with_them(lifter: Lifter) -> None:
    """A piece of a long clip (`bulk`) and a live frame that land in one batch run as two passes, the live
    frame's first: it waits for no clip windows but those already in the model."""
    gated = GatedLifter(lifter)
    engine = Engine(gated, max_batch=64, batch_wait_ms=200.0)  # type: ignore[arg-type]
    first, piece, live = windows(1, 0), windows(8, 1), windows(1, 2)
    engine.start()
    try:

        async def main() -> list[np.ndarray]:
            busy = asyncio.ensure_future(engine.run_windows(*first))  # holds the worker at the gate
            await asyncio.sleep(0.05)
            queued = [
                asyncio.ensure_future(engine.run_windows(*piece, bulk=True)),
                asyncio.ensure_future(engine.run_windows(*live)),
            ]
            await asyncio.sleep(0.05)  # both queued while the first pass waits: the next batch holds both
            gated.gate.set()
            return list(await asyncio.gather(busy, *queued))

        results = asyncio.run(main())
    finally:
        engine.stop()
    assert gated.sizes == [1, 1, 8]  # the live frame's pass before the clip piece's
    for (w, s), got in zip([first, piece, live], results, strict=True):
        np.testing.assert_allclose(got, lifter.run_windows(w, s), rtol=0, atol=TOLERANCE_MM)


def test_engine_not_started_is_unavailable(lifter: Lifter) -> None:
    with pytest.raises(Unavailable, match="not loaded"):
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


def test_engine_failed_request_does_not_fail_those_batched_with_it(lifter: Lifter) -> None:
    engine = Engine(lifter, max_batch=64, batch_wait_ms=100.0)
    good = [windows(n, seed) for seed, n in enumerate([2, 3])]
    bad = np.zeros((1, 5, 3, 2), np.float32), np.ones((1, 5, 3), np.float32)  # 3 joints: cannot be lifted
    engine.start()
    try:

        async def together() -> list[Any]:
            calls = [engine.lift_windows(*good[0]), engine.lift_windows(*bad), engine.lift_windows(*good[1])]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        first, failed, second = asyncio.run(together())
    finally:
        engine.stop()
    assert isinstance(failed, Exception) and not isinstance(failed, Unavailable)
    np.testing.assert_allclose(first, lifter.lift_windows(*good[0]), rtol=0, atol=TOLERANCE_MM)
    np.testing.assert_allclose(second, lifter.lift_windows(*good[1]), rtol=0, atol=TOLERANCE_MM)


def test_engine_stop_with_requests_queued_resolves_every_one(lifter: Lifter) -> None:
    # The worker is held in a forward pass while requests pile up and stop() is called; requests keep coming
    # during the shutdown. Each must end, with its poses (queued before the stop) or Unavailable (after).
    gated = GatedLifter(lifter)
    engine = Engine(gated, max_batch=2, batch_wait_ms=0.0)  # type: ignore[arg-type]
    engine.start()

    async def main() -> list[Any]:
        first = [asyncio.ensure_future(engine.lift_windows(*windows(1, k))) for k in range(6)]
        await asyncio.sleep(0.05)  # the worker has taken the first batch and waits at the gate
        stopping = asyncio.ensure_future(engine.aclose())
        late: list[asyncio.Future[Any]] = []
        for k in range(50):  # requests racing the shutdown
            late.append(asyncio.ensure_future(engine.lift_windows(*windows(1, 100 + k))))
            await asyncio.sleep(0)
            if k == 10:
                gated.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*first, *late, return_exceptions=True), timeout=30)
        await asyncio.wait_for(stopping, timeout=30)
        return results

    results = asyncio.run(main())
    assert not engine.ready
    queued, late = results[:6], results[6:]
    for k, result in enumerate(queued):  # accepted before the stop: answered, not dropped
        np.testing.assert_allclose(result, lifter.lift_windows(*windows(1, k)), rtol=0, atol=TOLERANCE_MM)
    assert all(isinstance(r, (Unavailable, np.ndarray)) for r in late)
    assert any(isinstance(r, Unavailable) for r in late)
    with pytest.raises(Unavailable, match="shutting down"):
        asyncio.run(engine.lift_windows(*windows(1, 0)))


class DawdlingQueue(queue.Queue[Any]):
    """A queue whose `put` of a request first dawdles: the moment a shutdown could slip in before it lands."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            time.sleep(0.2)
        super().put(item, block, timeout)


def test_engine_stop_racing_a_request_being_queued_never_strands_it(lifter: Lifter) -> None:
    # A request checks that the engine runs, then is queued; a stop between the two must not leave it behind
    # the stop marker, unanswered forever.
    engine = Engine(lifter, batch_wait_ms=0.0)
    engine._queue = DawdlingQueue()
    engine.start()
    outcome: dict[str, Any] = {}

    def client() -> None:
        try:
            outcome["poses"] = asyncio.run(asyncio.wait_for(engine.lift_windows(*windows(1, 0)), 5))
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.05)  # the request is being queued
    engine.stop()
    thread.join(10)
    assert "poses" in outcome or isinstance(outcome.get("error"), Unavailable), outcome


class ThreadRecordingLifter(GatedLifter):
    """The gated lifter that also records which thread ran each pass."""

    def __init__(self, lifter: Lifter):
        super().__init__(lifter)
        self.threads: list[str] = []

    def run_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().run_windows(windows_norm, scores)


def test_engine_runs_a_lone_live_request_on_the_callers_thread_only_when_idle(lifter: Lifter) -> None:
    recording = ThreadRecordingLifter(lifter)
    recording.gate.set()
    engine = Engine(recording, batch_wait_ms=0.0, inline_when_idle=True)  # type: ignore[arg-type]
    engine.start()
    w, s = windows(2, 0)
    try:
        big_w, big_s = windows(INLINE_MAX_WINDOWS + 1, 1)

        async def each_kind() -> list[np.ndarray]:
            return [
                await engine.run_windows(w, s, alone=True),  # idle and alone: inline
                await engine.run_windows(w, s),  # not known to be alone: the worker
                await engine.run_windows(w, s, bulk=True, alone=True),  # a clip piece: the worker
                await engine.run_windows(big_w, big_s, alone=True),  # too many windows: the worker
            ]

        results = asyncio.run(each_kind())
    finally:
        engine.stop()
    me = threading.current_thread().name
    assert recording.threads == [me] + ["poselift-batcher"] * 3
    for got, (gw, gs) in zip(results, [(w, s)] * 3 + [(big_w, big_s)], strict=True):  # same poses anywhere
        np.testing.assert_allclose(got, lifter.run_windows(gw, gs), rtol=0, atol=TOLERANCE_MM)
    assert sample(engine, "poselift_batch_requests_count") == 4  # every pass is counted


def test_engine_sends_a_lone_request_to_the_worker_while_a_pass_is_under_way(lifter: Lifter) -> None:
    # Running it inline while the worker is busy would put two passes on the cores at once; it waits its turn.
    recording = ThreadRecordingLifter(lifter)
    engine = Engine(recording, batch_wait_ms=0.0, inline_when_idle=True)  # type: ignore[arg-type]
    engine.start()
    try:

        async def while_busy() -> np.ndarray:
            first = asyncio.ensure_future(engine.run_windows(*windows(1, 0)))
            while not recording.threads:  # the worker has taken the first request and waits at the gate
                await asyncio.sleep(0.005)
            second = asyncio.ensure_future(engine.run_windows(*windows(1, 1), alone=True))
            await asyncio.sleep(0.05)
            assert not second.done()  # it did not run inline past the busy worker
            recording.gate.set()
            await first
            return await second

        got = asyncio.run(while_busy())
    finally:
        engine.stop()
    assert recording.threads == ["poselift-batcher", "poselift-batcher"]
    np.testing.assert_allclose(got, lifter.run_windows(*windows(1, 1)), rtol=0, atol=TOLERANCE_MM)
