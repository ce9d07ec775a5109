"""The GPU check: on a machine with CUDA, the cuda-marked tests, the model bench and a serving bench on the
GPU, written to one document (bench/GPU.md).

Run: `make gpu-check` (or `python -m bench.gpu_check [--out bench/GPU.md] [--only STEP ...] [--quick]`) in a
venv whose torch is a CUDA build (`make setup TORCH_SPEC="torch==2.13.0 --index-url
https://download.pytorch.org/whl/cu126"`). Steps, in order (`--only` picks some):

- `tests`: `pytest -m cuda` (tests/poselift/test_cuda.py, tests/service/test_cuda_serving.py: the shipped
  checkpoints lifted on CUDA against the CPU, the batching engine and REST on a CUDA lifter);
- `model`: `python -m bench.model --device cuda` with eager torch, TorchScript and torch.compile;
- `onnx`: ONNX Runtime's CUDAExecutionProvider on the exported graph, timed like bench.model, when
  onnxruntime-gpu is installed (it replaces the CPU-only onnxruntime package); otherwise the document says so;
- `serving`: `python -m bench.load --device cuda` (one `poselift serve` on the GPU, sessions in a throw-away
  redis-server): REST clips and StreamLift flat out, 1 and 64 streams.

Without a usable CUDA device it stops at once with "no CUDA device" and exit status 2, and writes nothing.
Exit status 1 when a step failed (the document still records every step). Figures are as good as the
machine is idle.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("tests", "model", "onnx", "serving")
NO_CUDA = 2


@dataclass
class Step:
    """One step's outcome: the command that reproduces it, its exit status, time, and what it printed."""

    name: str
    command: list[str]
    returncode: int
    seconds: float
    output: str


def cuda_problem() -> str | None:
    """None when torch can run on a CUDA device here, else a line saying why not."""
    if torch.version.cuda is None:
        return (
            f"no CUDA device: torch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
        )
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return None


def run(name: str, command: list[str], timeout_s: float) -> Step:
    """Run a step's command from the repository root, echoing its output."""
    print(f"== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code = 124
        streams = (expired.output, expired.stderr)
        printed = [b.decode(errors="replace") if isinstance(b, bytes) else b or "" for b in streams]
        output = "".join(printed) + f"\n(stopped after {timeout_s:.0f} s)"
    step = Step(name, command, code, time.monotonic() - started, str(output))
    print(step.output[-4000:], flush=True)
    return step


def tests_step(quick: bool, timeout_s: float) -> Step:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    return run("tests", command, timeout_s)


def model_step(quick: bool, timeout_s: float) -> Step:
    command = [sys.executable, "-m", "bench.model", "--device", "cuda"]
    command += ["--backend", "torch", "--backend", "torchscript", "--backend", "compile"]
    command += ["--repeats", "50" if quick else "200", "--rounds", "1" if quick else "3"]
    return run("model", command, timeout_s)


def serving_step(quick: bool, timeout_s: float, out_dir: Path) -> Step:
    document = out_dir / "serving.md"
    command = [sys.executable, "-m", "bench.load", "--device", "cuda", "--stores", "redis"]
    command += ["--sessions", "1,64", "--modes", "flat", "--rest-clients", "1", "--out", str(document)]
    command += ["--seconds", "3" if quick else "10", "--note", "python -m bench.gpu_check"]
    step = run("serving", command, timeout_s)
    if document.exists():  # the bench's own document, not its progress lines
        step.output = document.read_text()
    return step


class OnnxCudaRuntime:
    """ONNX Runtime's CUDAExecutionProvider over the exported graph (the bench's, not a serving backend)."""

    name = "onnx-cuda"

    def __init__(self, onnx_model: bytes) -> None:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                f"{', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu in place of onnxruntime"
            )
        self.session = ort.InferenceSession(onnx_model, providers=["CUDAExecutionProvider"])
        if self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"ONNX Runtime fell back to {self.session.get_providers()}")

    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        from poselift.export import INPUT_NAMES, OUTPUT_NAME

        feeds = {INPUT_NAMES[0]: windows_norm.astype(np.float32), INPUT_NAMES[1]: scores.astype(np.float32)}
        return np.asarray(self.session.run([OUTPUT_NAME], feeds)[0], dtype=np.float32)


def onnx_table(names: Sequence[str], repeats: int) -> str:
    """Latency and throughput of ONNX Runtime on CUDA per checkpoint, and its largest gap to eager CPU."""
    from bench.model import BATCHES, latency_ms, model_ceiling
    from poselift.export import cached_export
    from poselift.lifter import Lifter, load_lifter

    lines = [
        "| model | backend | batch-1 latency median (ms) | "
        + " | ".join(f"frames/s @{b}" for b in BATCHES)
        + " | max gap to CPU eager (mm) |",
        "|---" * (4 + len(BATCHES)) + "|",
    ]
    rng = np.random.default_rng(0)
    for name in names:
        cpu = load_lifter(name, "cpu", backend="torch")
        runtime = OnnxCudaRuntime(cached_export(cpu.model, cpu.checkpoint_id))
        lifter = Lifter(cpu.model, cpu.metadata, cpu.path, runtime)
        windows = rng.uniform(-0.5, 0.5, (64, cpu.window, 17, 2)).astype(np.float32)
        scores = np.ones((64, cpu.window, 17), np.float32)
        gap = float(np.abs(lifter.lift_windows(windows, scores) - cpu.lift_windows(windows, scores)).max())
        median = statistics.median(latency_ms(lifter, 1, repeats))
        rates = model_ceiling(lifter, BATCHES[1:], max(repeats // 10, 10))
        cells = " | ".join(f"{r:,.0f}" for r in [1e3 / median, *rates.values()])
        lines.append(f"| {name} | {runtime.name} | {median:.3f} | {cells} | {gap:.4f} |")
    return "\n".join(lines)


def onnx_step(quick: bool, timeout_s: float) -> Step:
    from poselift.checkpoint import SHIPPED

    command = [sys.executable, "-m", "bench.gpu_check", "--only", "onnx"]
    started = time.monotonic()
    try:
        output, code = onnx_table(SHIPPED, 50 if quick else 200), 0
    except (ImportError, RuntimeError) as error:  # no onnxruntime-gpu: a finding, not a crash
        output, code = f"not measured: {error}", 0 if "CUDAExecutionProvider" in str(error) else 1
    print(f"== onnx\n{output}", flush=True)
    return Step("onnx", command, code, time.monotonic() - started, output)


def machine_lines() -> list[str]:
    from bench.model import machine

    lines = [f"- machine: {machine()}"]
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,driver_version,memory.total,utilization.gpu"
        smi = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True)
        lines += [f"- nvidia-smi: {line}" for line in smi.stdout.splitlines() if line.strip()]
    return lines


def document(steps: Sequence[Step], began: str, commit: str, quick: bool) -> str:
    """The markdown of a run: provenance, then each step's command, outcome and output."""
    sections = [
        "# GPU check (`python -m bench.gpu_check`)",
        "\n".join(
            [
                f"- began: {began}",
                f"- commit: {commit or 'unknown'}",
                *machine_lines(),
                f"- mode: {'--quick (figures not comparable)' if quick else 'full'}",
                "- outcome: "
                + ", ".join(
                    f"{s.name} {'ok' if s.returncode == 0 else f'FAILED ({s.returncode})'}" for s in steps
                ),
            ]
        ),
    ]
    for step in steps:
        body = step.output.strip() if step.name in ("onnx", "serving") else f"```\n{step.output.strip()}\n```"
        sections.append(
            f"## {step.name}: `{' '.join(Path(c).name if c == sys.executable else c for c in step.command)}`"
            f"\n\nexit {step.returncode}, {step.seconds:.0f} s\n\n{body}"
        )
    return "\n\n".join(sections) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", default=str(ROOT / "bench" / "GPU.md"), help="the document (default bench/GPU.md)"
    )
    p.add_argument("--only", action="append", choices=STEPS, default=None, help="repeatable; default: all")
    p.add_argument("--quick", action="store_true", help="fewer repeats, 3-s spans: a few minutes in all")
    p.add_argument("--step-timeout", type=float, default=900.0, help="seconds a step may run (default 900)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = cuda_problem()
    if problem is not None:
        print(f"gpu_check: {problem}; nothing was run (see docs/deployment.md, 'GPU check')", file=sys.stderr)
        return NO_CUDA
    began = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="poselift-gpu-check-") as scratch:
        for name in args.only or STEPS:
            if name == "tests":
                steps.append(tests_step(args.quick, args.step_timeout))
            elif name == "model":
                steps.append(model_step(args.quick, args.step_timeout))
            elif name == "onnx":
                steps.append(onnx_step(args.quick, args.step_timeout))
            else:
                steps.append(serving_step(args.quick, args.step_timeout, Path(scratch)))
    Path(args.out).write_text(document(steps, began, commit.stdout.strip(), args.quick))
    print(f"written to {args.out}")
    return 0 if all(step.returncode == 0 for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
