"""bench.gpu_check where there is no GPU: it says so and runs nothing; its arguments and its document."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_check
from bench.gpu_check import Step

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the command in a fresh process
def test_gpu_check_without_cuda_says_so_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "GPU.md"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU machine
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == gpu_check.NO_CUDA == 2, done.stderr
    assert "no CUDA device" in done.stderr and "nothing was run" in done.stderr
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_gpu_check_cuda_problem_names_the_torch_build() -> None:
    problem = gpu_check.cuda_problem()
    assert problem is not None and problem.startswith("no CUDA device") and torch.__version__ in problem


def test_gpu_check_arguments() -> None:
    args = gpu_check.parse_args([])
    assert Path(args.out) == ROOT / "bench" / "GPU.md" and args.only is None and not args.quick
    args = gpu_check.parse_args(["--only", "tests", "--only", "onnx", "--quick", "--out", "x.md"])
    assert args.only == ["tests", "onnx"] and args.quick and args.out == "x.md"
    with pytest.raises(SystemExit) as raised:
        gpu_check.parse_args(["--only", "everything"])
    assert raised.value.code == 2


def test_gpu_check_document_records_each_step() -> None:
    steps = [
        Step("tests", [sys.executable, "-m", "pytest", "-m", "cuda"], 0, 12.3, "7 passed"),
        Step("serving", [sys.executable, "-m", "bench.load"], 1, 40.0, "| streams | frames/s |"),
    ]
    text = gpu_check.document(steps, "2026-11-30 12:00 UTC", "abc1234", quick=True)
    assert "- commit: abc1234" in text and "--quick" in text
    assert "- outcome: tests ok, serving FAILED (1)" in text
    assert "## tests: `" in text and "-m pytest -m cuda`" in text and "```\n7 passed\n```" in text
    assert "exit 1, 40 s\n\n| streams | frames/s |" in text  # the serving bench's own markdown, unfenced
