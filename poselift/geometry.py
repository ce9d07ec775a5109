"""Camera geometry: screen normalisation, world -> camera, pinhole projection, root-relative poses.

Conventions (docs/conventions.md): pixels have their origin top-left, x right, y down. The camera frame is
OpenCV's (x right, y down, z forward), millimetres. The mocap world is right-handed with Z up.
"""

from __future__ import annotations

import numpy as np

from poselift.skeleton import ROOT

WORLD_UP = np.array([0.0, 0.0, 1.0])


def normalize_screen_coordinates(
    keypoints_px: np.ndarray, width: float | np.ndarray, height: float | np.ndarray
) -> np.ndarray:
    """Map pixels to [-1, 1] along the width, keeping the aspect ratio (VideoPose3D's convention).

    The single normalisation both training and serving use, so any camera resolution works.

    Args:
        keypoints_px: (..., 2) pixel coordinates.
        width: image width in pixels (> 0), a number or an array broadcastable to keypoints_px.shape[:-1].
        height: image height in pixels (> 0), likewise.

    Returns:
        (..., 2) float32: x in [-1, 1], y in [-h/w, h/w] for points inside the image.
    """
    if isinstance(width, int | float) and isinstance(height, int | float):  # one image size: the common case
        if not (width > 0 and height > 0):
            raise ValueError(f"image size must be positive, got width={width}, height={height}")
        offset_1 = np.array([1.0, height / width])
        return (np.asarray(keypoints_px, dtype=np.float64) / width * 2.0 - offset_1).astype(np.float32)
    width_a, height_a = np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)
    if np.any(width_a <= 0) or np.any(height_a <= 0):
        raise ValueError(f"image size must be positive, got width={width}, height={height}")
    ratio = height_a / width_a
    offset = np.stack(np.broadcast_arrays(np.ones_like(ratio), ratio), axis=-1)  # (..., 2)
    return (np.asarray(keypoints_px, dtype=np.float64) / width_a[..., None] * 2.0 - offset).astype(np.float32)


def denormalize_screen_coordinates(keypoints_norm: np.ndarray, width: float, height: float) -> np.ndarray:
    """Inverse of `normalize_screen_coordinates` for one image size: (..., 2) -> (..., 2) px."""
    return (np.asarray(keypoints_norm, dtype=np.float64) + np.array([1.0, height / width])) * width / 2.0


def mask_missing(keypoints_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(..., J, 2) keypoints with the coordinates of missing joints (score <= 0) set to 0 (a copy)."""
    return np.where(np.asarray(scores)[..., None] > 0, keypoints_norm, 0.0).astype(np.float32)


def look_at_rotation(camera_pos_mm: np.ndarray, target_mm: np.ndarray) -> np.ndarray:
    """World -> camera rotation (..., 3, 3) for cameras at (..., 3) `camera_pos_mm` looking at `target_mm`.

    Z-up world. Rows are the camera's x (right), y (down) and z (forward) axes in world coordinates, so the
    horizon stays level (no roll). The camera must not look straight up or down.
    """
    forward = np.asarray(target_mm, dtype=np.float64) - np.asarray(camera_pos_mm, dtype=np.float64)
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, WORLD_UP)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=-2)


def world_to_camera(
    points_world_mm: np.ndarray, rotation: np.ndarray, camera_pos_mm: np.ndarray
) -> np.ndarray:
    """(..., 3) world points (mm) -> (..., 3) camera-frame points (mm): R (X - C).

    `rotation` (3, 3) or broadcastable to (..., 3, 3); `camera_pos_mm` (3,) or broadcastable to (..., 3).
    """
    offset = np.asarray(points_world_mm, dtype=np.float64) - camera_pos_mm
    return np.matmul(np.asarray(rotation), offset[..., None])[..., 0]


def camera_to_world(points_cam_mm: np.ndarray, rotation: np.ndarray, camera_pos_mm: np.ndarray) -> np.ndarray:
    """Inverse of `world_to_camera`: (..., 3) camera-frame points -> (..., 3) world points, mm."""
    rot_t = np.swapaxes(np.asarray(rotation), -1, -2)
    return np.matmul(rot_t, np.asarray(points_cam_mm, dtype=np.float64)[..., None])[..., 0] + camera_pos_mm


def project_to_2d(
    points_cam_mm: np.ndarray, focal_px: float | np.ndarray, center_px: tuple[float, float] | np.ndarray
) -> np.ndarray:
    """Pinhole projection (no distortion) of (..., 3) camera-frame points to (..., 2) pixels.

    Args:
        points_cam_mm: (..., 3) points in front of the camera (z > 0), mm.
        focal_px: focal length in pixels (square pixels), or an array broadcastable to points.shape[:-1].
        center_px: principal point (cx, cy) in pixels, or an array broadcastable to (..., 2).
    """
    pts = np.asarray(points_cam_mm, dtype=np.float64)
    z = np.maximum(pts[..., 2:3], 1e-6)
    return pts[..., :2] / z * np.asarray(focal_px)[..., None] + np.asarray(center_px, dtype=np.float64)


def root_relative(poses_mm: np.ndarray) -> np.ndarray:
    """(..., J, 3) poses -> the same with the pelvis (root) subtracted, so the pelvis is at the origin."""
    poses_mm = np.asarray(poses_mm)
    return poses_mm - poses_mm[..., ROOT : ROOT + 1, :]


DEFAULT_HFOV_DEG = 65.0  # field of view across the longer image side assumed when a client gives no focal


def default_focal_px(width: float, height: float) -> float:
    """The focal length assumed when none is given: a 65° field of view across the longer image side.

    65° is typical of phone main cameras and webcams (35 mm-equivalent focal length ~28 mm). A wrong focal
    length scales the returned depth of the pelvis (depth ∝ focal), not the pose.
    """
    return float(max(width, height) / (2.0 * np.tan(np.deg2rad(DEFAULT_HFOV_DEG) / 2.0)))


def camera_in_normalised_units(
    width: float,
    height: float,
    focal_px: float | None = None,
    principal_px: tuple[float, float] | None = None,
) -> tuple[float, np.ndarray]:
    """(focal, principal point (2,)) in `normalize_screen_coordinates`' units; defaults: see above, centre."""
    focal = default_focal_px(width, height) if focal_px is None else float(focal_px)
    principal = np.array([width / 2.0, height / 2.0] if principal_px is None else principal_px, np.float64)
    return focal * 2.0 / width, normalize_screen_coordinates(principal, float(width), float(height)).astype(
        np.float64
    )


def root_from_code(code: np.ndarray, focal_norm: float, principal_norm: np.ndarray) -> np.ndarray:
    """The pelvis in the camera frame (mm) from a root code of the tcn's root head.

    A root code is (u, v, d): the pelvis' image position in screen-normalised units and its depth divided by
    the normalised focal length. Then X = d·(u - cx), Y = d·(v - cy), Z = d·f (all normalised units cancel).

    Args:
        code: (..., 3) root codes.
        focal_norm: the focal length in screen-normalised units (focal_px · 2 / width).
        principal_norm: (2,) the principal point in screen-normalised units.

    Returns:
        (..., 3) float64 mm.
    """
    code = np.asarray(code, dtype=np.float64)
    d = code[..., 2:3]
    return np.concatenate([d * (code[..., :2] - principal_norm), d * focal_norm], axis=-1)
