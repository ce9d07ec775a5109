"""`poselift serve` as a process: serves REST, exits cleanly on SIGTERM, refuses bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.testkit import CHECKPOINT, free_port


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSELIFT_")}
    env.update(
        {"POSELIFT_CHECKPOINT": CHECKPOINT, "POSELIFT_HOST": "127.0.0.1", "POSELIFT_TORCH_THREADS": "1"}
    )
    env.update(extra)
    return env


def test_serve_cli_serves_then_shuts_down_gracefully_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "poselift.cli", "serve"],
        env=serve_env(POSELIFT_HTTP_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "poselift serve did not become ready"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        output = process.stdout.read().decode() if process.stdout else ""
        assert "shutting down gracefully" in output and "Application shutdown complete" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_cli_bad_settings_exit_2_with_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poselift.cli", "serve"],
        env=serve_env(POSELIFT_HTTP_PORT="eighty", POSELIFT_MAX_BATCH="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "POSELIFT_HTTP_PORT" in result.stderr and "POSELIFT_MAX_BATCH" in result.stderr


def test_serve_cli_missing_checkpoint_exit_2_with_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poselift.cli", "serve"],
        env=serve_env(POSELIFT_CHECKPOINT="/nonexistent/ckpt"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "POSELIFT_CHECKPOINT" in result.stderr and "no checkpoint" in result.stderr


def test_serve_cli_bad_backend_or_onnx_file_exit_2_with_message(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    for extra, expected in (
        ({"POSELIFT_BACKEND": "tensorrt"}, "POSELIFT_BACKEND"),
        ({"POSELIFT_ONNX_PATH": str(tmp_path / "missing.onnx")}, "no ONNX file"),
        ({"POSELIFT_ONNX_PATH": str(garbage)}, "not a usable ONNX model"),
        ({"POSELIFT_BACKEND": "torch", "POSELIFT_ONNX_PATH": str(garbage)}, "onnx_path is for the onnx"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "poselift.cli", "serve"],
            env=serve_env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, (extra, result.stderr)
        assert expected in result.stderr, (extra, result.stderr)
