import numpy as np

from poselift.skeleton import H36M17_PARENTS
from trainer.augment import NO_AUGMENT, AugmentConfig, WindowSampler, scale_bones
from trainer.mocap import Mocap

from .conftest import TRAIN


def _bones(poses: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            np.linalg.norm(poses[..., j, :] - poses[..., p, :], axis=-1)
            for j, p in enumerate(H36M17_PARENTS)
            if p >= 0
        ],
        axis=-1,
    )


def test_clean_windows_keep_the_skeleton_and_have_valid_inputs():
    data = Mocap.load(TRAIN)
    batch = WindowSampler(data, 5, NO_AUGMENT, np.random.default_rng(0)).sample(64)
    assert batch["keypoints_norm"].shape == (64, 5, 17, 2)
    assert batch["scores"].shape == (64, 5, 17) and (batch["scores"] == 1).all()
    target = batch["target_mm"]
    assert target.shape == (64, 5, 17, 3) and np.all(target[:, :, 0] == 0)
    # One skeleton: camera-frame bone lengths equal the mocap's (interpolation shortens them a hair).
    ref = _bones(data.positions_mm[:1])[0]
    assert np.allclose(np.median(_bones(target), axis=(0, 1)), ref, rtol=0.02)


def test_augmented_windows_drop_joints_and_vary_scale():
    data = Mocap.load(TRAIN)
    aug = AugmentConfig(drop_window_prob=1.0, drop_rate_max=0.5)
    batch = WindowSampler(data, 5, aug, np.random.default_rng(1)).sample(256)
    missing = batch["scores"] == 0
    assert missing.any()
    assert np.all(batch["keypoints_norm"][missing] == 0)
    assert np.isfinite(batch["keypoints_norm"]).all()
    heights = _bones(batch["target_mm"])[:, 0].sum(axis=-1)  # some bones' total per window
    assert heights.std() > 0.01 * heights.mean()


def test_scale_bones_scales_each_bone():
    data = Mocap.load(TRAIN)
    poses = data.positions_mm[None, :3].astype(np.float64)  # (1, 3, 17, 3)
    scale = np.full((1, 17), 1.0)
    scale[0, 2] = 1.5  # right knee's bone (hip -> knee)
    out = scale_bones(poses, scale)
    assert np.allclose(_bones(out)[..., 1], 1.5 * _bones(poses)[..., 1])
    assert np.allclose(_bones(out)[..., 0], _bones(poses)[..., 0])
    assert np.allclose(out[:, :, 0], poses[:, :, 0])
