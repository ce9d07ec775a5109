"""The fixed, seeded evaluation rig: held-out mocap seen through four documented virtual cameras.

Each segment is filmed by four static cameras placed around the segment's mean pelvis position at azimuths
45°, 135°, 225° and 315° (world frame), 15° above the horizontal, 6 m away, looking at that point from
1.0 m above the floor. Each is a 1920×1080 camera with a 1500 px focal length (about 65° horizontal field of
view) and its principal point at the image centre. Noise (Gaussian, σ px, per coordinate) and dropped joints
come from a generator seeded with `seed`, so every checkpoint sees exactly the same corrupted input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from poselift.geometry import look_at_rotation, project_to_2d, root_relative, world_to_camera
from trainer.corruption import DetectorNoise, corrupt_like_detector
from trainer.mocap import Mocap

AZIMUTHS_DEG = (45.0, 135.0, 225.0, 315.0)
ELEVATION_DEG = 15.0
DISTANCE_MM = 6000.0
AIM_HEIGHT_MM = 1000.0
WIDTH_PX, HEIGHT_PX = 1920, 1080
FOCAL_PX = 1500.0


@dataclass(frozen=True)
class RigView:
    """One segment through one rig camera: 2D input and 3D truth."""

    segment: int
    camera: int
    action: str
    keypoints_px: np.ndarray  # (T, 17, 2)
    target_mm: np.ndarray  # (T, 17, 3) root-relative, camera frame
    root_mm: np.ndarray  # (T, 3) the pelvis in the camera frame


def rig_views(data: Mocap) -> Iterator[RigView]:
    """Every segment of `data` through every rig camera, clean."""
    for seg in range(len(data)):
        world = data.segment(seg).astype(np.float64)
        centre = world[:, 0].mean(axis=0)
        aim = np.array([centre[0], centre[1], AIM_HEIGHT_MM])
        for cam_idx, az_deg in enumerate(AZIMUTHS_DEG):
            az, el = np.deg2rad(az_deg), np.deg2rad(ELEVATION_DEG)
            cam_pos = aim + DISTANCE_MM * np.array(
                [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
            )
            cam = world_to_camera(world, look_at_rotation(cam_pos, aim), cam_pos)
            kp = project_to_2d(cam, FOCAL_PX, (WIDTH_PX / 2, HEIGHT_PX / 2))
            yield RigView(seg, cam_idx, str(data.action[seg]), kp, root_relative(cam), cam[:, 0].copy())


def corrupt_like_detector_view(
    keypoints_px: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One view through `trainer.corruption`'s detector model at its default ranges: (T, 17, 2) ->
    (keypoints, scores (T, 17)). The person's size is the larger side of their box over the view."""
    size = float((keypoints_px.max(axis=1) - keypoints_px.min(axis=1)).max())
    kp, scores = corrupt_like_detector(keypoints_px[None], np.array([size]), rng, DetectorNoise())
    return kp[0], scores[0].astype(np.float32)


def corrupt(
    keypoints_px: np.ndarray, noise_px: float, drop_frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Add Gaussian pixel noise and drop a fraction of joints: (T, 17, 2) -> (keypoints, scores (T, 17))."""
    kp = keypoints_px + noise_px * rng.standard_normal(keypoints_px.shape)
    scores = (rng.random(keypoints_px.shape[:-1]) >= drop_frac).astype(np.float32)
    return kp, scores
