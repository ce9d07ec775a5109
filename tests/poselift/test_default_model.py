"""The shipped default model (tcn) on real motion: frame rates, one skeleton, the offline mode, the pelvis.

The motion is a validation walk (CMU subject 09/10, never trained on) seen by a camera 5 m away. Tolerances
are stated here and in docs/results.md; they hold for the shipped weights, not for an untrained network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poselift import Lifter, load_lifter
from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera
from poselift.metrics import bone_length_cv, limb_asymmetry, mpjpe, mpjve

VAL = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"
FOCAL_PX, SIZE = 1200.0, (1280, 720)
# Largest mean joint distance (mm) between the poses of one motion filmed at 10, 30 and 120 fps, compared
# at the instants all three saw (after the first second).
FPS_TOLERANCE_MM = 5.0  # measured: 0.05 mm (120 vs 30 fps) and 1.1 mm (10 vs 30 fps)


@pytest.fixture(scope="module")
def lifter() -> Lifter:
    return load_lifter("tcn", "cpu")


def _film(world_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 17, 3) world poses -> (keypoints px, root-relative camera-frame truth, pelvis in the camera)."""
    aim = world_mm[:, 0].mean(axis=0)
    cam_pos = aim + np.array([3500.0, 3500.0, 800.0])
    cam = world_to_camera(world_mm, look_at_rotation(cam_pos, aim), cam_pos)
    return project_to_2d(cam, FOCAL_PX, (SIZE[0] / 2, SIZE[1] / 2)), cam - cam[:, :1], cam[:, 0]


def _walk(segment: int = 14) -> np.ndarray:  # "walk", 136 frames
    d = np.load(VAL)
    start, length = int(d["clip_starts"][segment]), int(d["clip_lengths"][segment])
    return d["positions"][start : start + length].astype(np.float64)  # 30 fps


def _resample(world_mm: np.ndarray, factor: int) -> np.ndarray:
    """30 fps motion at 30·factor fps, linearly interpolated between the captured frames."""
    t = np.arange((len(world_mm) - 1) * factor + 1) / factor
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, len(world_mm) - 1)
    w = (t - i0)[:, None, None]
    return world_mm[i0] * (1 - w) + world_mm[i1] * w


def test_the_same_motion_at_10_30_and_120_fps_lifts_to_the_same_poses(lifter: Lifter) -> None:
    world = _walk()
    at30 = _film(world)[0]
    at120 = _film(_resample(world, 4))[0]
    at10 = at30[::3]
    poses30 = lifter.lift(at30, *SIZE, fps=30.0)
    poses120 = lifter.lift(at120, *SIZE, fps=120.0)
    poses10 = lifter.lift(at10, *SIZE, fps=10.0)
    common = np.arange(30, len(at30), 3)  # 30 fps frames every camera saw, after the first second
    a, b, c = poses30[common], poses120[common * 4], poses10[common // 3]
    assert mpjpe(b, a) < FPS_TOLERANCE_MM and mpjpe(c, a) < FPS_TOLERANCE_MM


def test_one_person_keeps_one_skeleton(lifter: Lifter) -> None:
    kp, truth, _ = _film(_walk())
    rng = np.random.default_rng(0)
    noisy = kp + rng.normal(0, 6.0, kp.shape)  # detector-sized noise
    poses = lifter.lift(noisy, *SIZE, fps=30.0)
    raw = lifter.lift_windows(*_windows(lifter, noisy))  # the network before the skeleton is kept
    assert bone_length_cv(poses[30:]) < 0.02 and bone_length_cv(poses[30:]) < bone_length_cv(raw[30:])
    assert limb_asymmetry(poses) < 0.1
    assert mpjpe(poses, truth) < 120


def _windows(lifter: Lifter, kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from poselift.inputs import prepare_keypoints
    from poselift.sequence import causal_inputs

    norm, sc = prepare_keypoints(kp, *SIZE)
    return causal_inputs(norm[:0], sc[:0], norm, sc, lifter.window, 1.0)


def test_offline_mode_sees_both_sides_and_is_smoother(lifter: Lifter) -> None:
    kp, truth, _ = _film(_walk())
    noisy = kp + np.random.default_rng(1).normal(0, 6.0, kp.shape)  # detector-sized noise
    causal = lifter.lift(noisy, *SIZE, fps=30.0)
    offline = lifter.lift(noisy, *SIZE, fps=30.0, mode="offline")
    # On the whole val split the offline mode is both closer and smoother (docs/results.md); on one clip of
    # one camera, smoother and within 10 % (this walk: 33.9 against 31.6 mm with the shipped checkpoint).
    assert mpjve(offline, truth) < mpjve(causal, truth)
    assert mpjpe(offline, truth) < 1.1 * mpjpe(causal, truth)
    causal = lifter.lift(kp, *SIZE, fps=30.0)
    offline = lifter.lift(kp, *SIZE, fps=30.0, mode="offline")
    later = kp.copy()
    later[-5:] += 40.0  # the future changes offline poses before it, never causal ones
    assert np.array_equal(lifter.lift(later, *SIZE, fps=30.0)[:-5], causal[:-5])
    assert not np.allclose(lifter.lift(later, *SIZE, fps=30.0, mode="offline")[-20:-5], offline[-20:-5])


def test_the_pelvis_is_placed_in_the_camera(lifter: Lifter) -> None:
    kp, _, root = _film(_walk())
    out = lifter.lift_full(kp, *SIZE, fps=30.0, focal_px=FOCAL_PX)
    assert out.root_mm is not None
    error = np.linalg.norm(out.root_mm - root, axis=-1)
    assert np.median(error) < 0.15 * np.median(root[:, 2])  # within 15 % of the distance


def test_frames_nobody_was_seen_in_say_so(lifter: Lifter) -> None:
    kp, _, _ = _film(_walk())
    scores = np.ones(kp.shape[:2])
    scores[40:] = 0.0
    out = lifter.lift_full(kp, *SIZE, fps=30.0, scores=scores)
    assert out.visible[39] == 1.0 and out.visible[-1] < out.visible[45] < 1.0
