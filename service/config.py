"""The service's settings: one pydantic-settings class, read from `POSELIFT_*` environment variables.

Built once at start-up (`Settings()`) and passed down; nothing here runs at import time, so tests build their
own `Settings(...)`. An invalid value fails start-up with a message naming the variable (`describe_error`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.redis_cluster import CLUSTER_SCHEMES, cluster_seeds, is_cluster_url

ENV_PREFIX = "POSELIFT_"


class Settings(BaseSettings):
    """Every knob of `poselift serve`; the environment variable is `POSELIFT_<NAME>` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str = Field(
        default="",
        description="Redis URL for sessions (redis://, rediss://, unix://); a Redis Cluster as "
        "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS; any of its nodes, several so a "
        "replica can start while one is down); empty: in-process",
    )
    checkpoint: str = Field(
        default="tcn",
        description='shipped checkpoint name ("tcn", the default; "seq2seq", the paper\'s; "framewise") or '
        "a path",
    )
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda[:N]"
    )
    backend: Literal["auto", "onnx", "torchscript", "torch"] = Field(
        default="auto",
        description="how the network runs: auto (CPU: onnx, the fastest measured; CUDA: torch) | onnx | "
        "torchscript | torch",
    )
    onnx_path: str = Field(
        default="", description="a `poselift export --onnx` file of the checkpoint (else exported at start)"
    )
    host: str = Field(default="0.0.0.0", description="interface the REST and gRPC servers bind")
    http_port: int = Field(default=8000, ge=0, le=65535, description="REST port (0: any free port)")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0: any free port)")
    grpc_max_concurrent_rpcs: int = Field(
        default=1024,
        ge=1,
        description="gRPC calls (open streams included) served at once; RESOURCE_EXHAUSTED above",
    )
    session_ttl_s: int = Field(
        default=300, ge=1, le=7 * 24 * 3600, description="a session expires this long after its last write"
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, description="comma-separated bearer keys; empty: no authentication"
    )
    max_frames_per_request: int = Field(
        default=4096, ge=1, le=1_000_000, description="frames in one /v1/lift or frames batch"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="largest request body accepted (413 above)"
    )
    max_batch: int = Field(default=256, ge=1, description="windows per forward pass of the batching worker")
    clip_chunk: int = Field(
        default=16,
        ge=1,
        description="windows of a /v1/lift clip sent to the model at a time while StreamLift streams are "
        "open on the worker (else max_batch), so live streams' frames are answered in between instead of "
        "waiting for the whole clip",
    )
    bulk_pause_ms: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="while StreamLift streams are open on a worker, how long a big /v1/lift body's parse "
        "and answer leave the event loop free between slices, so that a live frame's several turns of the "
        "loop come first (0: one turn)",
    )
    batch_wait_ms: float = Field(
        default=2.0, ge=0.0, le=1000.0, description="how long a batch waits to fill up"
    )
    inline_when_idle: bool = Field(
        default=True,
        description="run a session push's forward pass on the event loop itself when its session is pushing "
        "on its own (it made the worker's previous push too, no other push is under way, the batching "
        "worker is idle) and brings at most 4 windows, instead of handing it to the worker and back (two "
        "thread wake-ups); concurrent sessions' pushes are batched as before",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="torch (and ONNX Runtime) intra-op threads per worker (0: torch's default with one "
        "worker, the CPUs shared out between several)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="worker processes of one replica sharing its ports, each with its own event loop and "
        'model (0 or "auto": one per CPU); more than 1 needs POSELIFT_REDIS_URL (docs/performance.md)',
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    store_timeout_s: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="bound on each session-store call; a store slower than that answers 503",
    )
    poses_held: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="last poses kept per session for resends; also the most frames in one session batch",
    )
    max_sessions: int = Field(
        default=100_000, ge=1, description="sessions the in-process store holds at most (429 above)"
    )
    redis_connections: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="connections to Redis at most; further concurrent calls wait for one (store timeout)",
    )
    redis_pipeline: bool = Field(
        default=True,
        description="send the commits of the sessions pushing in the same turn of the event loop to Redis as "
        "one pipeline (one round trip) instead of one call each; one Redis server only (a cluster's "
        "commits go one call each)",
    )
    session_cache: int = Field(
        default=4096,
        ge=0,
        description="sessions a replica remembers (each about its size in Redis, make bench's bytes/session) "
        "so a push is one Redis round trip (0: off)",
    )
    push_retries: int = Field(
        default=64, ge=1, description="optimistic-concurrency attempts of one frames push"
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("auto", "0"):
            return os.cpu_count() or 1
        return os.cpu_count() or 1 if value == 0 else value

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, workers: int, info: ValidationInfo) -> int:
        if workers > 1 and info.data.get("redis_url") == "":
            raise ValueError(
                f"{workers} workers need POSELIFT_REDIS_URL: each worker is its own process, and sessions in "
                "the in-process store would not move between them (set POSELIFT_WORKERS=1 or a Redis URL)"
            )
        return workers

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if len(key) < 8 or any(ch.isspace() for ch in key):
                raise ValueError("each API key needs at least 8 characters and no whitespace")
        return keys

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        url = url.strip()
        if url and not url.startswith(("redis://", "rediss://", "unix://", *CLUSTER_SCHEMES)):
            raise ValueError(
                "must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// (or be "
                "empty for the in-process store)"
            )
        if is_cluster_url(url):
            cluster_seeds(url)  # ValueError naming the node that is not host:port
            if urlsplit(url).path.strip("/") not in ("", "0"):
                raise ValueError("a Redis Cluster has only database 0")
        return url


def redact_url(url: str) -> str:
    """`url` with its credentials hidden: user info (`user:password@`) and a `password=` query parameter."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    query = urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, True)], safe="*"
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def describe_error(error: ValidationError) -> str:
    """A start-up message naming each invalid environment variable and what is wrong with it.

    API keys are never echoed, and a Redis URL only without its credentials.
    """
    lines = ["invalid settings:"]
    for item in error.errors():
        field = "_".join(str(part) for part in item["loc"])
        given = item.get("input")
        if field == "redis_url" and isinstance(given, str):
            given = redact_url(given)
        shown = "" if field.startswith("api_keys") else f" (got {given!r})"
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {item['msg']}{shown}")
    return "\n".join(lines)
