"""Prometheus metrics of one service instance, in its own registry (two apps in one process never clash).

Under `POSELIFT_WORKERS` > 1 each worker process writes its values to files in `PROMETHEUS_MULTIPROC_DIR`
(prometheus_client's multiprocess mode, set up by `service.workers`), and any worker renders the sum over
the replica's workers: counters and histograms summed (those of a restarted worker's predecessor included),
gauges summed over live workers, the session count the latest one's.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """Every metric the service exports; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "poselift_requests_total",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "poselift_request_duration_seconds",
            "Request latency by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_windows = Histogram(
            "poselift_batch_windows",
            "Windows per forward pass of the batching worker.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "poselift_batch_requests",
            "Requests grouped into one forward pass.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "poselift_inference_seconds",
            "Duration of one forward pass.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_depth = Gauge(
            "poselift_queue_depth",
            "Requests waiting for the batching worker.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.active_sessions = Gauge(
            "poselift_active_sessions",
            "Sessions held by the session store.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.store_errors = Counter(
            "poselift_store_errors_total",
            "Session-store calls that failed or timed out.",
            ["operation"],
            registry=r,
        )
        self.push_conflicts = Counter(
            "poselift_push_conflicts_total",
            "Frames pushes retried because another writer committed first.",
            registry=r,
        )

        self.stream_frames = Counter(
            "poselift_stream_frames_total",
            "StreamLift frames answered, by outcome (pose, or the in-band error code).",
            ["outcome"],
            registry=r,
        )
        self.open_streams = Gauge(
            "poselift_open_streams", "StreamLift streams open now.", registry=r, multiprocess_mode="livesum"
        )
        self.frame_latency = Histogram(
            "poselift_stream_frame_seconds",
            "From reading a StreamLift frame to its reply.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (of every worker's, in multiprocess mode)."""
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        replica = CollectorRegistry()
        multiprocess.MultiProcessCollector(replica, directory)
        return generate_latest(replica)
