"""The public API on the shipped default model."""

from pathlib import Path

import numpy as np
import pytest

from poselift import load_lifter
from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera
from poselift.metrics import mpjpe
from poselift.skeleton import COCO17_JOINTS, H36M17_JOINTS

VAL = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"


@pytest.fixture(scope="module")
def lifter():
    return load_lifter("seq2seq", "cpu")


@pytest.fixture(scope="module")
def clip():
    """First val segment (60 frames) through a camera 5 m away: (keypoints_px, target_mm)."""
    d = np.load(VAL)
    world = d["positions"][d["clip_starts"][0] : d["clip_starts"][0] + 60].astype(np.float64)
    aim = world[:, 0].mean(axis=0)
    cam_pos = aim + np.array([3500.0, 3500.0, 800.0])
    cam = world_to_camera(world, look_at_rotation(cam_pos, aim), cam_pos)
    return project_to_2d(cam, 1200.0, (640.0, 360.0)), cam - cam[:, :1]


def test_lift_returns_mm_poses_close_to_the_truth(lifter, clip):
    kp, target = clip
    poses = lifter.lift(kp, width=1280, height=720, fps=30.0)
    assert poses.shape == (60, 17, 3) and poses.dtype == np.float32
    assert np.all(poses[:, 0] == 0)
    assert mpjpe(poses, target) < 150  # a trained model, not noise (typical error is far lower)


def test_lift_is_causal(lifter, clip):
    kp, _ = clip
    base = lifter.lift(kp, 1280, 720, 30.0)
    changed = kp.copy()
    changed[30:] += np.random.default_rng(0).normal(0, 40, changed[30:].shape)
    after = lifter.lift(changed, 1280, 720, 30.0)
    assert np.array_equal(base[:30], after[:30])
    assert not np.allclose(base[30:], after[30:])


def test_lift_is_independent_of_batching(lifter, clip):
    kp, _ = clip
    whole = lifter.lift(kp, 1280, 720, 30.0)
    prefix = lifter.lift(kp[:17], 1280, 720, 30.0)
    assert np.allclose(whole[:17], prefix, atol=1e-3)


def test_missing_joints_give_finite_poses(lifter, clip):
    kp, _ = clip
    scores = np.ones(kp.shape[:2])
    scores[::3, [3, 6, 13]] = 0.0
    kp = kp.copy()
    kp[scores == 0] = np.nan  # a detector's "not found"; ignored because the score is 0
    scores[10] = 0.0  # one frame with no joints at all
    poses = lifter.lift(kp, 1280, 720, 30.0, scores=scores)
    assert np.isfinite(poses).all()


def test_coco_layout_is_accepted(lifter, clip):
    kp_h36m, _ = clip
    coco = np.zeros((len(kp_h36m), len(COCO17_JOINTS), 2))
    name = {n: i for i, n in enumerate(H36M17_JOINTS)}
    for ci, n in enumerate(COCO17_JOINTS):
        if n in name:
            coco[:, ci] = kp_h36m[:, name[n]]
    coco[:, 0:5] = kp_h36m[:, [name["neck"]]]  # face points at the nose/eye joint
    poses = lifter.lift(coco, 1280, 720, 30.0, layout="coco17")
    assert poses.shape == (len(kp_h36m), 17, 3) and np.isfinite(poses).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"keypoints_px": np.zeros((4, 16, 2))}, "shape"),
        ({"keypoints_px": np.full((4, 17, 2), np.nan)}, "finite"),
        ({"width": -5}, "positive"),
        ({"fps": 0}, "fps"),
        ({"layout": "openpose"}, "layout"),
        ({"scores": np.full((4, 17), 2.0)}, "scores"),
    ],
)
def test_bad_input_is_a_clear_value_error(lifter, kwargs, message):
    args = {"keypoints_px": np.zeros((4, 17, 2)), "width": 640, "height": 480, "fps": 30.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        lifter.lift(**args)
