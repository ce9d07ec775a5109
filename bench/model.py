"""The model alone: per-frame latency at batch 1, throughput at larger batches, FLOPs per frame.

Run: `make bench` (or `python -m bench.model [--checkpoint NAME] [--threads N]`). A "frame" is one causal
window whose newest pose is returned, exactly what serving computes per incoming frame.
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

from poselift.lifter import Lifter, load_lifter


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


def flops_per_frame(lifter: Lifter) -> float:
    """Floating-point operations (multiply-add = 2) of one window's forward pass."""
    kp, sc = (torch.from_numpy(a) for a in _inputs(1, lifter.window))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        lifter.model(kp.to(lifter.device), sc.to(lifter.device))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", action="append", default=None, help="default: seq2seq and framewise")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n")
    print(
        "| model | hidden | window | FLOPs/frame | batch-1 latency median (ms) | p99 (ms) "
        "| frames/s @64 | frames/s @256 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.checkpoint or ["seq2seq", "framewise"]:
        lifter = load_lifter(name, args.device)
        one = latency_ms(lifter, 1, args.repeats)
        p99 = float(np.percentile(one, 99))
        rates = {
            b: b / (statistics.median(latency_ms(lifter, b, max(args.repeats // 10, 10))) / 1e3)
            for b in (64, 256)
        }
        cfg = lifter.model.config
        print(
            f"| {name} | {cfg.hidden_size} | {cfg.window} | {flops_per_frame(lifter) / 1e6:.1f} M "
            f"| {statistics.median(one):.3f} | {p99:.3f} | {rates[64]:,.0f} | {rates[256]:,.0f} |"
        )


if __name__ == "__main__":
    main()
