"""Real poses files for the output tools' tests: CMU val mocap seen through a camera, or a lifter's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera
from poselift.poses_file import Poses

VAL = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"
WIDTH, HEIGHT, FOCAL_PX = 1280, 720, 1200.0


def val_segments() -> list[np.ndarray]:
    """Every val segment's world poses, (T, 17, 3) mm, Z up."""
    d = np.load(VAL)
    return [
        d["positions"][s : s + n].astype(np.float64)
        for s, n in zip(d["clip_starts"], d["clip_lengths"], strict=True)
    ]


def mocap_poses(segment: int = 0, frames: int | None = None, fps: float = 30.0) -> Poses:
    """A val segment through a camera 5 m away and 0.8 m above the pelvis: the true poses as a poses file."""
    world = val_segments()[segment][:frames]
    aim = world[:, 0].mean(axis=0)
    cam_pos = aim + np.array([3500.0, 3500.0, 800.0])
    cam = world_to_camera(world, look_at_rotation(cam_pos, aim), cam_pos)  # (T, 17, 3)
    count = len(cam)
    return Poses(
        fps=fps,
        width=WIDTH,
        height=HEIGHT,
        focal_px=FOCAL_PX,
        keypoints_px=project_to_2d(cam, FOCAL_PX, (WIDTH / 2, HEIGHT / 2)),
        scores=np.ones((count, 17)),
        poses_mm=cam - cam[:, :1],
        trajectory_mm=cam[:, 0].copy(),
        visible=np.ones(count),
        track_id=1,
        frame_index=np.arange(count),
    )
