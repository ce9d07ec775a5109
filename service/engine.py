"""Batched inference: one worker thread groups concurrent requests into one forward pass, off the event loop
(except a lone session's few windows, which may run on the caller's thread: `run_windows(alone=True)`).

Every request (a whole `/v1/lift` clip, or the new frames of one session push) hands the engine its causal
windows. The worker takes the first waiting request, then every request already queued (they piled up while
the last pass ran) until the batch holds `max_batch` windows; under concurrent load (another request queued
already, or the last batch held several) it also waits up to `batch_wait_ms` for more, so a lone stream
waits at most once, just after concurrent load. Then it runs one forward pass of the core's
`Lifter.lift_windows` under `torch.inference_mode` and splits the poses back. A request larger than
`max_batch` runs alone; no request is ever split, so its poses come from exactly one pass. If a pass fails,
its requests are retried one by one, so only the request that causes the failure fails.

Shutdown (`stop`, or `await aclose()` from an event loop) refuses new requests with `Unavailable`, answers
every request queued before it, then ends the worker: no request is ever left waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from poselift import Lifter, load_lifter
from poselift.skeleton import NUM_JOINTS
from service.config import Settings
from service.errors import Unavailable
from service.metrics import Metrics

log = logging.getLogger(__name__)


LIVE_SETTLE_S = 0.001  # after a pass of live frames, the pause before a clip piece batched with them
# The most windows a pass run inline may hold: a streamed frame's one (a few from a camera faster than the
# model's rate). A larger push (a REST session batch of up to POSELIFT_POSES_HELD frames) would hold the
# event loop, and every other client on it, for its whole pass: it goes to the worker.
INLINE_MAX_WINDOWS = 4


@dataclass
class _Job:
    windows_norm: np.ndarray  # (N, W, 17, 2)
    scores: np.ndarray  # (N, W, 17)
    bulk: bool = False  # a piece of a long clip: live frames batched with it are answered first
    future: concurrent.futures.Future[np.ndarray] = field(default_factory=concurrent.futures.Future)


def load_model(settings: Settings) -> Lifter:
    """Load the configured checkpoint on the configured device (CUDA when present and `device` is auto).

    Raises:
        RuntimeError: with a readable message when the checkpoint or the device is unusable.
    """
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"POSELIFT_DEVICE={settings.device} but CUDA is not available on this machine")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        return load_lifter(
            settings.checkpoint,
            device=settings.device,
            backend=settings.backend,
            onnx_path=settings.onnx_path or None,
        )
    except Exception as error:  # a bad file, a failed export, a missing runtime: all a start-up message
        raise RuntimeError(
            f"cannot load checkpoint POSELIFT_CHECKPOINT={settings.checkpoint!r} with "
            f"POSELIFT_BACKEND={settings.backend!r}: {error}"
        ) from error


class Engine:
    """Owns the lifter and the batching worker thread; `await lift_windows(...)` from any event loop."""

    def __init__(
        self,
        lifter: Lifter,
        max_batch: int = 256,
        batch_wait_ms: float = 2.0,
        metrics: Metrics | None = None,
        inline_when_idle: bool = False,
    ):
        self.lifter = lifter
        self.inline_when_idle = inline_when_idle
        self._pending = 0  # requests queued or in a pass (under _lock): 0 means the worker is idle
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.metrics = metrics or Metrics()
        self._queue: queue.Queue[_Job | None] = queue.Queue()  # None: the stop marker, always queued last
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # orders "refuse once stopping" against "enqueue" and the stop marker
        self._stopping = False
        self._held: _Job | None = None  # a job taken that did not fit the last batch: first of the next
        self._held_stop = False  # the stop marker was taken while gathering: stop after the next batch
        self._last_requests = 0  # requests in the last batch: more than one means concurrent load

    @property
    def window(self) -> int:
        return self.lifter.window

    @property
    def ready(self) -> bool:
        return not self._stopping and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (idempotent; not after `stop`)."""
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="poselift-batcher", daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse new requests, answer those already queued, then stop the worker. Blocks; see `aclose`."""
        with self._lock:
            self._stopping = True
            thread, self._thread = self._thread, None
            if thread is None:  # never started, or already stopped
                return
            self._queue.put(None)  # under the lock: no job can be queued after the marker
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("the batching worker did not finish its queue within %.1f s", timeout_s)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """`stop` off the event loop, which meanwhile keeps serving (and delivers the drained replies)."""
        await asyncio.to_thread(self.stop, timeout_s)

    async def lift_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The network's pose of the newest frame of each window, (N, 17, 3) float32 mm (see run_windows)."""
        return (await self.run_windows(windows_norm, scores))[:, 0, :NUM_JOINTS]

    async def run_windows(
        self, windows_norm: np.ndarray, scores: np.ndarray, bulk: bool = False, alone: bool = False
    ) -> np.ndarray:
        """Every head of each window (`Lifter.run_windows`), batched with other callers' windows.

        Args:
            windows_norm: (N, W, 17, 2) float32 screen-normalised keypoints, oldest frame first.
            scores: (N, W, 17) float32.
            bulk: a piece of a long clip, not a live frame: when a batch holds both, the live frames'
                windows go first, in a pass of their own.
            alone: the caller knows no other caller of this engine is under way (one stream's frame; the
                service has one event loop and one engine per process): with `inline_when_idle`, no request
                queued or in a pass and at most `INLINE_MAX_WINDOWS` windows, the pass runs right here on
                the calling thread, sparing the two thread wake-ups of the hand-off to the worker and back
                (~0.1-0.4 ms per frame measured on 2 vCPUs, docs/performance.md).

        Returns:
            (N, 2, 18, 3) float32 heads: [:, 0] newest frame, [:, 1] centre frame; rows 0-16 the pose (mm),
            row 17 the root code.

        Raises:
            Unavailable: the worker is not running (not started yet, or shutting down).
        """
        job = _Job(
            np.ascontiguousarray(windows_norm, np.float32), np.ascontiguousarray(scores, np.float32), bulk
        )
        with self._lock:
            if self._stopping:
                raise Unavailable("the service is shutting down")
            if self._thread is None:
                raise Unavailable("the model is not loaded yet")
            inline = (
                self.inline_when_idle
                and alone
                and not bulk
                and len(job.windows_norm) <= INLINE_MAX_WINDOWS
                and self._pending == 0
            )
            self._pending += 1
            if not inline:
                job.future.add_done_callback(self._done)
                self._queue.put(job)
        if inline:  # nothing to batch with: skip the hand-off to the worker and back
            try:
                return self._forward([job])
            except Exception:
                log.exception("forward pass failed (inline)")
                raise
            finally:
                self._done(job.future)
        self.metrics.queue_depth.set(self._queue.qsize())
        return await asyncio.wrap_future(job.future)

    def _done(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    def _next_batch(self) -> list[_Job] | None:
        """Block for one job, then gather more until the batch is full or the wait is over; None: stop."""
        if self._held is not None:
            first: _Job | None = self._held
            self._held = None
        else:
            first = None if self._held_stop else self._queue.get()
        if first is None:
            return None
        batch, size = [first], len(first.windows_norm)
        # Wait for more only while requests come in together (another is queued already, or the last batch
        # held several): a lone stream's round trip is the model's latency alone.
        busy = self._last_requests > 1 or not self._queue.empty()
        wait_s = self.batch_wait_s if busy else 0.0
        deadline = time.monotonic() + wait_s
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # the stop marker: nothing follows it; this batch is the last
                self._held_stop = True
                break
            if size + len(job.windows_norm) > self.max_batch:
                self._held = job  # too big to fit: it starts the next batch
                break
            batch.append(job)
            size += len(job.windows_norm)
        self.metrics.queue_depth.set(self._queue.qsize())
        self._last_requests = len(batch)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]  # drop cancelled ones
            live = [job for job in jobs if not job.bulk]
            if live and len(live) < len(jobs):  # live frames first: their pass is short, a clip's is not
                self._answer(live)
                # The clip's pass takes every core the runtime has: leave the event loop a moment to finish
                # the live frames (bones, commit, reply) before it starts.
                time.sleep(LIVE_SETTLE_S)
                self._answer([job for job in jobs if job.bulk])
            elif jobs:
                self._answer(jobs)
        self._fail_pending()

    def _answer(self, jobs: list[_Job]) -> None:
        """Run one pass for `jobs` and resolve their futures; a failed pass is retried job by job."""
        try:
            poses = self._forward(jobs)
        except Exception as error:  # a failed pass fails its requests, never the worker
            if len(jobs) > 1:  # find the culprit: only the request that fails alone fails
                log.warning(
                    "a forward pass of %d requests failed (%s); retrying them one by one", len(jobs), error
                )
                for job in jobs:
                    self._answer([job])
                return
            log.exception("forward pass failed")
            jobs[0].future.set_exception(error)
            return
        start = 0
        for job in jobs:
            job.future.set_result(poses[start : start + len(job.windows_norm)])
            start += len(job.windows_norm)

    def _forward(self, jobs: list[_Job]) -> np.ndarray:
        windows = np.concatenate([job.windows_norm for job in jobs])  # (N, W, 17, 2)
        scores = np.concatenate([job.scores for job in jobs])  # (N, W, 17)
        started = time.perf_counter()
        with torch.inference_mode():
            poses = self.lifter.run_windows(windows, scores)  # (N, 2, 18, 3)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_windows.observe(len(windows))
        self.metrics.batch_requests.observe(len(jobs))
        return poses

    def _fail_pending(self) -> None:
        """Refuse whatever is still queued (nothing should be: no job is queued after the stop marker)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Unavailable("the service is shutting down"))
