"""Several event loops per replica: `POSELIFT_WORKERS` processes sharing the REST and gRPC ports.

One event loop spends ~0.3 ms of Python on each streamed frame (bench/PROFILE.md), which caps a replica well
below its model. With `POSELIFT_WORKERS` > 1, `poselift serve` is a supervisor: it reserves both ports
(bound with SO_REUSEPORT, never listening, so the kernel never hands it a connection) and starts that many
worker processes. Each worker is today's single-process server (`service.cli.run`: uvicorn and grpc.aio on
one loop, its own batching engine and model runtime) listening on the same two ports with SO_REUSEPORT; the
kernel spreads new connections over the workers. Sessions live in Redis, so a session moves between workers
as it moves between replicas; more than one worker without Redis is refused at start-up (`Settings`).

Each worker answers every REST response with the header `poselift-worker: <n>` and every gRPC call with
that initial metadata (1..N), and its own `/readyz` and gRPC health. `/metrics` of any worker is the whole
replica's: prometheus_client's multiprocess mode, in a directory the supervisor creates and removes.

The supervisor restarts a worker that dies (at once if it had served for a while, else after a growing
delay), forwards SIGTERM/SIGINT to every worker, which drains as a single process does (`service.cli`), and
exits 0 once all have drained. A worker that cannot start (exit 2: unusable settings or model; 1: a port)
stops the replica with that code. A worker whose supervisor vanished drains by itself. Workers run in their
own process groups, so a terminal's Ctrl-C reaches them once, through the supervisor.

With `POSELIFT_TORCH_THREADS=0`, each of N workers gets cpu_count // N intra-op threads (at least 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings
from service.metrics import MULTIPROC_ENV

log = logging.getLogger("poselift.workers")

WORKER_HEADER = "poselift-worker"  # REST response header and gRPC initial metadata: the worker's number
PARENT_CHECK_S = 1.0  # how often a worker checks that its supervisor is still there
STEADY_S = 10.0  # a worker that served this long and died is restarted at once; sooner, after a delay
MAX_DELAY_S = 30.0
STOP_TIMEOUT_S = 30.0  # after forwarding SIGTERM: workers still running then are killed


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (0: any free port) with SO_REUSEPORT, not listening yet.

    Raises:
        OSError: the address cannot be bound (e.g. a process without SO_REUSEPORT holds the port).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class _WorkerHeader:
    """ASGI middleware: every HTTP response carries `poselift-worker: <n>`."""

    def __init__(self, app: ASGIApp, index: int):
        self.app = app
        self.header = (WORKER_HEADER.encode(), str(index).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


@dataclass(frozen=True)
class Worker:
    """What one worker process knows of its place in the replica; `service.cli.run` takes it."""

    index: int  # 1..N
    parent_pid: int
    ready: Event  # set once both servers listen

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC initial metadata of every call this worker answers."""
        return ((WORKER_HEADER, str(self.index)),)

    def http_socket(self, host: str, port: int) -> socket.socket:
        """The REST listening socket, shared with the other workers (SO_REUSEPORT)."""
        try:
            return reuseport_socket(host, port)
        except OSError as error:
            raise OSError(f"cannot serve REST on {_address(host, port)}: {error}") from error

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """`app` answering with this worker's header."""
        return _WorkerHeader(app, self.index)

    async def watch(self, http: uvicorn.Server) -> None:
        """Announce readiness once uvicorn listens; drain (SIGTERM to itself) if the supervisor vanished."""
        while not http.started:
            await asyncio.sleep(0.05)
        self.ready.set()
        while os.getppid() == self.parent_pid:
            await asyncio.sleep(PARENT_CHECK_S)
        log.warning("the supervisor (pid %d) is gone: shutting down", self.parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)


def worker_threads(settings: Settings) -> int:
    """Intra-op threads of each worker: the setting, else the CPUs shared out between the workers."""
    if settings.torch_threads:
        return settings.torch_threads
    return max(1, (os.cpu_count() or 1) // settings.workers)


def _worker_main(settings: Settings, index: int, parent_pid: int, ready: Event) -> None:
    """A worker process: today's `poselift serve` on the shared ports."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor only, which forwards it once
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # until `run` handles both: a signal ends a loading worker
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s [worker {index}]: %(message)s",
    )
    from service.cli import serve_settings  # here: service.cli imports this module

    sys.exit(serve_settings(settings, Worker(index, parent_pid, ready)))


@dataclass
class _Slot:
    """One worker's place: its current process, and how it has been dying."""

    index: int
    process: BaseProcess | None = None
    ready: Event | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # deaths in a row before it served STEADY_S
    restart_at: float | None = None


class Supervisor:
    """Starts `settings.workers` workers on reserved ports, restarts the dead, forwards signals."""

    def __init__(self, settings: Settings, http: socket.socket, grpc: socket.socket, metrics_dir: str):
        self.settings = settings.model_copy(
            update={
                "http_port": http.getsockname()[1],
                "grpc_port": grpc.getsockname()[1],
                "torch_threads": worker_threads(settings),
            }
        )
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self.slots = [_Slot(index) for index in range(1, settings.workers + 1)]
        self.signals = 0  # SIGTERM/SIGINT received (or a fatal start-up failure): stopping
        self.stop_deadline = 0.0
        self.exit_code = 0

    def run(self) -> int:
        """Supervise until every worker has stopped; the replica's exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for slot in self.slots:
            self._start(slot)
        while any(slot.process is not None or self._restarting(slot) for slot in self.slots):
            self._wait()
            for slot in self.slots:
                process = slot.process
                if process is not None and process.exitcode is not None:
                    self._reap(slot, process)
                if self.signals == 0 and slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                    self._start(slot)
            self._kill_stragglers()
        return self.exit_code

    def _restarting(self, slot: _Slot) -> bool:
        return slot.restart_at is not None and not self.signals

    def _wait(self) -> None:
        sentinels = [slot.process.sentinel for slot in self.slots if slot.process is not None]
        due = [slot.restart_at - time.monotonic() for slot in self.slots if slot.restart_at is not None]
        multiprocessing.connection.wait(sentinels, timeout=max(0.0, min([1.0, *due])))

    def _start(self, slot: _Slot) -> None:
        slot.ready = self.context.Event()
        slot.process = self.context.Process(
            target=_worker_main,
            args=(self.settings, slot.index, os.getpid(), slot.ready),
            name=f"poselift-worker-{slot.index}",
        )
        slot.process.start()
        slot.started_at, slot.restart_at = time.monotonic(), None
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _reap(self, slot: _Slot, process: BaseProcess) -> None:
        """`slot`'s worker has exited: note it, and restart it unless the replica is stopping."""
        from prometheus_client import multiprocess

        code = process.exitcode
        assert code is not None and process.pid is not None
        slot.process = None
        multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # its live gauges leave the sums
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        ready = slot.ready is not None and slot.ready.is_set()
        if self.signals:
            log.info("worker %d (pid %d) %s", slot.index, process.pid, how)
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):  # drained, or stopped while loading
                self.exit_code = self.exit_code or 1
            return
        if not ready and code in (1, 2):  # could not load its model or bind a port: nor will the others
            log.error(
                "worker %d (pid %d) %s before it served: stopping the replica", slot.index, process.pid, how
            )
            self.exit_code = code
            self._forward(signal.SIGTERM)
            return
        served = time.monotonic() - slot.started_at
        slot.quick_deaths = 0 if ready and served >= STEADY_S else slot.quick_deaths + 1
        delay = 0.0 if slot.quick_deaths == 0 else min(MAX_DELAY_S, 2.0 ** (slot.quick_deaths - 1))
        log.warning("worker %d (pid %d) %s; restarting it in %.0f s", slot.index, process.pid, how, delay)
        slot.restart_at = time.monotonic() + delay

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.signals == 0:
            log.info("received %s: draining %d worker(s)", sig.name, len(self.slots))
        self.signals += 1
        self.stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot in self.slots:
            slot.restart_at = None
        self._forward(sig)  # a second signal reaches the workers as their second: they stop at once

    def _forward(self, sig: signal.Signals) -> None:
        if self.signals == 0:  # a fatal start-up failure: stop the others as a signal would
            self.signals = 1
            self.stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot in self.slots:
            slot.restart_at = None
            if slot.process is not None and slot.process.pid is not None:  # no exitcode: it may reap
                with contextlib.suppress(ProcessLookupError):  # it has just exited
                    os.kill(slot.process.pid, sig)

    def _kill_stragglers(self) -> None:
        if self.signals and time.monotonic() > self.stop_deadline:
            for slot in self.slots:
                if slot.process is not None and slot.process.exitcode is None:
                    log.warning(
                        "worker %d did not stop within %.0f s: killing it", slot.index, STOP_TIMEOUT_S
                    )
                    slot.process.kill()


def _reserve(settings: Settings) -> tuple[socket.socket, socket.socket]:
    """Both ports reserved (port 0 resolved once for all workers); OSError naming the one that is taken."""
    sockets: list[socket.socket] = []
    for name, port in (("REST", settings.http_port), ("gRPC", settings.grpc_port)):
        try:
            sockets.append(reuseport_socket(settings.host, port))
        except OSError as error:
            for sock in sockets:
                sock.close()
            raise OSError(f"cannot serve {name} on {_address(settings.host, port)}: {error}") from error
    return sockets[0], sockets[1]


def supervise(settings: Settings) -> int:
    """`poselift serve` with several workers: returns the process exit code."""
    try:
        http, grpc = _reserve(settings)
    except OSError as error:
        print(f"poselift serve: {error}", file=sys.stderr)
        return 1
    metrics_dir = tempfile.mkdtemp(prefix="poselift-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the workers, read when they import prometheus
    try:
        supervisor = Supervisor(settings, http, grpc, metrics_dir)
        log.info(
            "%d workers (%d intra-op thread(s) each) on REST %s and gRPC %s",
            settings.workers, supervisor.settings.torch_threads,
            _address(settings.host, supervisor.settings.http_port),
            _address(settings.host, supervisor.settings.grpc_port),
        )  # fmt: skip
        return supervisor.run()
    finally:
        http.close()
        grpc.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
