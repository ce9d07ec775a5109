"""The model alone, per runtime backend: per-frame latency at batch 1, throughput by batch, FLOPs per frame.

Run: `make bench` (or `python -m bench.model [--checkpoint NAME] [--backend B] [--threads N] [--rounds R]`).
A "frame" is one causal window whose newest pose is returned, exactly what serving computes per incoming
frame. Backends (`poselift.runtimes`): "torch" (eager), "torchscript" (trace + freeze), "onnx" (ONNX Runtime,
CPU) and "compile" (`torch.compile(dynamic=True)`). By default the first three run; "compile" only when asked
(`--backend compile`): on this 2-core CPU (gcc present) it compiles in ~25 s, then again for batch 1, fine
for a benchmark but not for a service's start-up, and it is slower than onnx anyway.

The machine may be shared: `--rounds R` measures every backend R times, interleaved, and keeps each figure's
best round (lowest latency, highest throughput). `model_ceiling` and `latency_ms` are importable, e.g. by
`bench.load`, to measure the model's ceiling in the same run as a load test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from poselift.checkpoint import SHIPPED
from poselift.export import WindowHeads
from poselift.lifter import Lifter, load_lifter
from poselift.runtimes import AUTO, BACKENDS

BATCHES = (1, 4, 16, 64, 256)
DEFAULT_BACKENDS = ("torch", "torchscript", "onnx")


def _inputs(batch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    kp = rng.uniform(-0.5, 0.5, (batch, window, 17, 2)).astype(np.float32)
    return kp, np.ones((batch, window, 17), np.float32)


def latency_ms(lifter: Lifter, batch: int, repeats: int) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls of lift_windows on `batch` windows (after warm-up)."""
    kp, sc = _inputs(batch, lifter.window)
    for _ in range(5):
        lifter.lift_windows(kp, sc)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lifter.lift_windows(kp, sc)
        if lifter.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def model_ceiling(lifter: Lifter, batches: tuple[int, ...] = BATCHES, repeats: int = 20) -> dict[int, float]:
    """Frames per second of `lifter.lift_windows` at each batch size: batch / median call time.

    Args:
        lifter: a loaded lifter (its backend is what is measured).
        batches: windows per call.
        repeats: timed calls per batch size (after 5 warm-up calls); batch 1 gets 5x as many.
    """
    return {
        b: b / (statistics.median(latency_ms(lifter, b, repeats * (5 if b == 1 else 1))) / 1e3)
        for b in batches
    }


def flops_per_frame(lifter: Lifter) -> float:
    """Floating-point operations (multiply-add = 2) of what serving runs for one window: the network's
    forward pass, twice with the checkpoint's test-time flip (`poselift.export.WindowHeads`)."""
    kp, sc = (torch.from_numpy(a) for a in _inputs(1, lifter.window))
    heads = WindowHeads(lifter.model).to(lifter.device).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        heads(kp.to(lifter.device), sc.to(lifter.device))
    return float(counter.get_total_flops())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def _measure(lifter: Lifter, repeats: int) -> dict[str, float]:
    """One round: batch-1 latency median and p99 (ms), and frames/s at each of BATCHES."""
    one = latency_ms(lifter, 1, repeats)
    figures = {"median_ms": statistics.median(one), "p99_ms": float(np.percentile(one, 99))}
    rates = model_ceiling(lifter, BATCHES[1:], max(repeats // 10, 10))
    rates[1] = 1e3 / figures["median_ms"]
    figures.update({f"fps@{b}": rate for b, rate in rates.items()})
    return figures


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: (min if k.endswith("_ms") else max)(r[k] for r in rounds) for k in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", action="append", default=None, help="default: every shipped checkpoint"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=(AUTO, *BACKENDS),
        default=None,
        help=f"repeatable; default: {', '.join(DEFAULT_BACKENDS)}",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls per round")
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds; each figure's best is kept"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n")
    print(
        "| model | backend | FLOPs/frame | load (s) | batch-1 latency median (ms) | p99 (ms) | "
        + " | ".join(f"frames/s @{b}" for b in BATCHES)
        + " |"
    )
    print("|---" * (6 + len(BATCHES)) + "|")
    for name in args.checkpoint or list(SHIPPED):
        lifters, load_s = {}, {}
        for backend in args.backend or DEFAULT_BACKENDS:
            start = time.perf_counter()
            lifter = load_lifter(name, args.device, backend=backend)
            latency_ms(lifter, 1, 1)  # a compiled backend compiles on its first calls: count that as loading
            load_s[backend], lifters[backend] = time.perf_counter() - start, lifter
        rounds: dict[str, list[dict[str, float]]] = {b: [] for b in lifters}
        for _ in range(args.rounds):
            for backend, lifter in lifters.items():
                rounds[backend].append(_measure(lifter, args.repeats))
        for backend, lifter in lifters.items():
            best = _best(rounds[backend])
            rates = " | ".join(f"{best[f'fps@{b}']:,.0f}" for b in BATCHES)
            flops_m = flops_per_frame(lifter) / 1e6
            print(
                f"| {name} | {lifter.backend} | {flops_m:.1f} M | {load_s[backend]:.1f} "
                f"| {best['median_ms']:.3f} | {best['p99_ms']:.3f} | {rates} |"
            )


if __name__ == "__main__":
    main()
