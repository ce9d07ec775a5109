import numpy as np
import pytest

from poselift.geometry import (
    camera_to_world,
    denormalize_screen_coordinates,
    look_at_rotation,
    mask_missing,
    normalize_screen_coordinates,
    project_to_2d,
    root_relative,
    world_to_camera,
)


def test_normalize_screen_maps_width_to_unit_range_keeping_aspect():
    corners = np.array([[0.0, 0.0], [1920.0, 1080.0], [960.0, 540.0]])
    out = normalize_screen_coordinates(corners, 1920, 1080)
    assert out == pytest.approx(np.array([[-1, -0.5625], [1, 0.5625], [0, 0]]), abs=1e-6)


def test_normalize_screen_round_trip_and_per_item_sizes():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 640, size=(5, 17, 2))
    back = denormalize_screen_coordinates(normalize_screen_coordinates(kp, 640, 480), 640, 480)
    assert back == pytest.approx(kp, abs=1e-3)
    widths = np.array([640.0, 1280.0])[:, None]
    both = normalize_screen_coordinates(np.stack([kp[0], kp[0] * 2]), widths, widths * 0.75)
    assert both[0] == pytest.approx(both[1], abs=1e-6)  # same relative position, twice the resolution


def test_normalize_screen_rejects_bad_size():
    with pytest.raises(ValueError, match="positive"):
        normalize_screen_coordinates(np.zeros((1, 2)), 0, 100)


def test_look_at_is_a_level_rotation_facing_the_target():
    cam = np.array([4000.0, 3000.0, 1500.0])
    target = np.array([0.0, 0.0, 1000.0])
    rot = look_at_rotation(cam, target)
    assert rot @ rot.T == pytest.approx(np.eye(3), abs=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    in_cam = world_to_camera(target, rot, cam)
    assert in_cam[:2] == pytest.approx([0, 0], abs=1e-9)
    assert in_cam[2] == pytest.approx(np.linalg.norm(target - cam))
    # y is down: a point above the target is above the image centre (negative y).
    assert world_to_camera(target + np.array([0, 0, 500]), rot, cam)[1] < 0


def test_world_camera_round_trip_batched():
    rng = np.random.default_rng(1)
    cams = rng.normal(size=(4, 3)) * 3000 + [0, 0, 5000]
    rots = look_at_rotation(cams, np.zeros((4, 3)))
    pts = rng.normal(size=(4, 6, 17, 3)) * 500
    cam_pts = world_to_camera(pts, rots[:, None, None], cams[:, None, None])
    back = camera_to_world(cam_pts, rots[:, None, None], cams[:, None, None])
    assert back == pytest.approx(pts, abs=1e-6)


def test_projection_of_known_point():
    px = project_to_2d(np.array([100.0, -50.0, 1000.0]), 1000.0, (320.0, 240.0))
    assert px == pytest.approx([420.0, 190.0])


def test_root_relative_and_mask_missing():
    poses = np.arange(17 * 3, dtype=float).reshape(17, 3) + 10
    rel = root_relative(poses)
    assert rel[0] == pytest.approx([0, 0, 0])
    assert rel[5] == pytest.approx(poses[5] - poses[0])
    kp = np.ones((2, 17, 2))
    scores = np.ones((2, 17))
    scores[1, 3] = 0
    masked = mask_missing(kp, scores)
    assert masked[1, 3].tolist() == [0, 0]
    assert masked[0, 3].tolist() == [1, 1]
