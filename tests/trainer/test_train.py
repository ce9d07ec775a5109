"""The trainer end to end: a few real steps on the real data -> checkpoint -> lift in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TRAIN

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow  # real training runs in fresh processes: make test, not make check


def _train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "poselift.cli",
        "train",
        "--data",
        str(TRAIN),
        "--out",
        str(out),
        "--hidden",
        "32",
        "--batch",
        "16",
        "--threads",
        "1",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_train_checkpoint_then_lift_in_a_fresh_process(tmp_path, small_val):
    res = _train(
        tmp_path / "run",
        "--model",
        "seq2seq",
        "--steps",
        "20",
        "--val",
        str(small_val),
        "--export",
        str(tmp_path / "exported"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "exported.safetensors").exists() and (tmp_path / "exported.json").exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val" in r for r in log)
    script = (
        "import json, numpy as np; from poselift import load_lifter;"
        f"l = load_lifter({str(tmp_path / 'exported')!r}, 'cpu');"
        "p = l.lift(np.random.default_rng(0).uniform(0, 400, (9, 17, 2)), width=400, height=400, fps=30);"
        "print(json.dumps({'shape': p.shape, 'finite': bool(np.isfinite(p).all()), 'meta': l.metadata}))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["shape"] == [9, 17, 3] and info["finite"]
    assert info["meta"]["training"]["max_steps"] == 20
    assert info["meta"]["validation"]["P1_clean"] > 0


def test_resume_continues_from_the_saved_step(tmp_path, small_val):
    run = tmp_path / "run"
    assert _train(run, "--model", "framewise", "--steps", "10", "--val", str(small_val)).returncode == 0
    res = _train(run, "--model", "framewise", "--steps", "25", "--val", str(small_val), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 25 and 10 in steps


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on loopback")
def test_ddp_two_processes(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "trainer",
        "--data",
        str(TRAIN),
        "--val",
        "",
        "--out",
        str(tmp_path / "ddp"),
        "--model",
        "framewise",
        "--hidden",
        "32",
        "--batch",
        "8",
        "--steps",
        "5",
        "--threads",
        "1",
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp" / "best.json").read_text())
    assert meta["training"]["world_size"] == 2
    assert meta["config"]["hidden_size"] == 32
