"""Where a serving replica's time goes under load: py-spy samples of `poselift serve` during StreamLift.

Run: `python -m bench.profile [--sessions 64] [--seconds 8] [--store redis|memory] [--out bench/PROFILE.md]`
(`make profile`). It starts its own redis-server and one `poselift serve` (as `make bench` does), streams
`--sessions` flat-out sessions at it from a client process, samples every thread of the server with py-spy
(`--nonblocking`, 100 Hz, so the sampling barely slows it) and prints, per thread, the share of wall time
it was running, then the event loop's time split by what it was doing (time in C code, gRPC's core or
numpy, counts for the Python function that called it). py-spy needs ptrace rights on the
server (root, or `kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import loadgen
from bench.loadkit import RedisServer, Server, val_clip
from bench.model import machine

# The event loop's samples, sorted by the first rule whose pattern appears in the stack (outermost-first
# order of the rules matters: a Redis call inside a push counts as Redis, not as the push).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Redis client (redis-py: pack, send, parse one EVALSHA)", ("redis/",)),
    ("input checks and normalisation (numpy)", ("poselift/inputs.py", "LiftingCore._prepare")),
    (
        "windows, session state, engine hand-off",
        ("poselift/windows.py", "SessionState.advance", "service/engine.py", "service/sessions.py"),
    ),
    ("message decode/encode, metrics", ("service/rpc/codec.py", "prometheus_client")),
    ("the rest of the push and the servicer", ("service/lifting.py", "service/rpc/servicer.py")),
    ("gRPC's core and asyncio (reading, writing, scheduling)", ("",)),
)


RATE_HZ = 100  # samples/s: low, so sampling slows the server little (compare frames/s with make bench)


def sample(pid: int, seconds: float, out: Path, rate: int = RATE_HZ) -> None:
    """py-spy record of `pid` (every thread, Python frames) for `seconds` into `out` (raw stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
               "--format", "raw", "--threads", "--nonblocking", "--output", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)


def summarise(raw: Path, seconds: float, rate: int = RATE_HZ) -> str:
    """Markdown: per-thread CPU share of wall time, and the event loop's samples by category."""
    threads: collections.Counter[str] = collections.Counter()
    loop: collections.Counter[str] = collections.Counter()
    loop_total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        name = frames[0].split(":", 1)[-1].strip() if ":" in frames[0] else frames[0]
        threads[name] += count
        if "MainThread" in frames[0]:
            loop_total += count
            loop[next(cat for cat, pats in CATEGORIES if any(p in stack for p in pats))] += count
    wall = seconds * rate
    lines = ["| thread | on a CPU (share of wall time) |", "|---|---|"]
    lines += [f"| {name} | {count / wall:.0%} |" for name, count in threads.most_common(6)]
    lines += ["", "| event loop (MainThread) doing | share of its samples |", "|---|---|"]
    lines += [f"| {cat} | {loop[cat] / loop_total:.0%} |" for cat, _ in CATEGORIES if loop[cat]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds sampled")
    parser.add_argument("--store", choices=("redis", "memory"), default="redis")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here (markdown)")
    args = parser.parse_args(argv)
    clip = val_clip(600)
    with RedisServer() as redis, Server({}, redis.url if args.store == "redis" else "") as server:
        start_at = time.time() + 3.0  # the client's warm-up, then sampling
        stop_at = start_at + args.seconds + 2.0
        spec = loadgen.StreamSpec(
            server.target, clip, args.sessions, 0, args.sessions, 0.0, 2.0, start_at, stop_at
        )
        with concurrent.futures.ProcessPoolExecutor(1) as pool, tempfile.TemporaryDirectory() as tmp:
            clients = pool.submit(loadgen.run_streams, spec)
            time.sleep(max(start_at - time.time(), 0.0))
            raw = Path(tmp) / "stacks.txt"
            sample(server.pid, args.seconds, raw)
            result = clients.result()
            tables = summarise(raw, args.seconds)
    frames_per_s = len(result.rtt_ms) / (stop_at - start_at)  # poses within the measured span
    text = "\n".join(
        [
            "# poselift serve under load: where the time goes",
            "",
            f"- command: `python -m bench.profile {' '.join(argv if argv is not None else sys.argv[1:])}`",
            f"- taken: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}",
            f"- {args.sessions} StreamLift sessions flat out, sessions in {args.store}; "
            f"{frames_per_s:,.0f} frames/s while sampled ({result.problems.total} problems); py-spy "
            f"--nonblocking, {args.seconds:g} s at {RATE_HZ} Hz",
            "",
            tables,
            "",
        ]
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
