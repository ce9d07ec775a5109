import json
import subprocess
import sys

import numpy as np
import pytest

from poselift.lifter import load_lifter
from trainer.evaluate import FILTERS, evaluate_lifters
from trainer.mocap import Mocap
from trainer.rig import corrupt, rig_views


def test_causal_filters_use_past_frames_only():
    poses = np.zeros((8, 17, 3))
    poses[5:] = 10.0
    for name, fn in FILTERS.items():
        out = fn(poses)
        assert np.all(out[:5] == 0), name  # a later jump never reaches earlier frames
    assert FILTERS["mean5"](poses)[5, 0, 0] == 2.0
    assert FILTERS["median5"](poses)[6, 0, 0] == 0.0 and FILTERS["median5"](poses)[7, 0, 0] == 10.0


def test_rig_is_fixed_and_corruption_seeded(small_val):
    data = Mocap.load(small_val)
    a, b = list(rig_views(data)), list(rig_views(data))
    assert len(a) == 4 * len(data)
    assert np.array_equal(a[0].keypoints_px, b[0].keypoints_px)
    kp1, sc1 = corrupt(a[0].keypoints_px, 10.0, 0.1, np.random.default_rng(0))
    kp2, sc2 = corrupt(a[0].keypoints_px, 10.0, 0.1, np.random.default_rng(0))
    assert np.array_equal(kp1, kp2) and np.array_equal(sc1, sc2)
    assert 0.05 < (sc1 == 0).mean() < 0.15
    assert np.std(kp1 - a[0].keypoints_px) == pytest.approx(10.0, rel=0.1)


def test_evaluate_reports_methods_and_filters(small_val):
    res = evaluate_lifters(
        {"framewise": load_lifter("framewise", "cpu")},
        Mocap.load(small_val),
        conditions=(("σ=0", 0.0, 0.0), ("σ=10", 10.0, 0.0)),
    )
    assert set(res["overall"]) == {"framewise", "framewise+median5", "framewise+mean5"}
    clean, noisy = res["overall"]["framewise"]["σ=0"], res["overall"]["framewise"]["σ=10"]
    assert noisy["MPJVE_mm_per_frame"] > clean["MPJVE_mm_per_frame"]
    assert clean["P2_mm"] <= clean["P1_mm"]
    assert len(res["per_joint_mm"]["framewise"]["σ=0"]) == 17


@pytest.mark.slow  # the evaluate command in a fresh process
def test_evaluate_cli_writes_json_and_plot(tmp_path, small_val):
    cmd = [
        sys.executable,
        "-m",
        "poselift.cli",
        "evaluate",
        "--data",
        str(small_val),
        "--checkpoint",
        "seq2seq",
        "--json",
        str(tmp_path / "r.json"),
        "--plot",
        str(tmp_path / "r.png"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "seq2seq" in res.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert set(out["overall"]["seq2seq"]) >= {"σ=0", "σ=20", "drop10%"}
    assert (tmp_path / "r.png").stat().st_size > 10_000
