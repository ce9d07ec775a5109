"""Checking and normalising 2D keypoint input: the one path from a client's pixels to model input."""

from __future__ import annotations

import math

import numpy as np

from poselift.geometry import mask_missing, normalize_screen_coordinates
from poselift.skeleton import LAYOUTS, NUM_JOINTS, to_h36m17

MAX_FPS = 1000.0
MAX_PIXELS = 1_000_000  # keypoints further out than this are garbage, not a large image


def check_camera(width: float, height: float, fps: float, layout: str) -> None:
    """Raise ValueError naming the problem if the image size, frame rate or layout is unusable."""
    check_image(width, height, layout)
    if not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be in (0, {MAX_FPS:g}], got {fps}")


def check_image(width: float, height: float, layout: str) -> None:
    """Raise ValueError naming the problem if the image size or the keypoint layout is unusable."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    for name, value in (("width", width), ("height", height)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of pixels, got {value}")


def prepare_keypoints(
    keypoints_px: np.ndarray,
    width: float,
    height: float,
    scores: np.ndarray | None = None,
    layout: str = "h36m17",
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (T, 17, 2) pixel keypoints of `layout` and turn them into model input.

    Args:
        keypoints_px: (T, 17, 2) pixel coordinates, origin top-left.
        width, height: image size in pixels.
        scores: (T, 17) confidences in [0, 1]; 0 marks a missing joint. None: all present.
        layout: "h36m17" or "coco17".

    Returns:
        (keypoints_norm (T, 17, 2) float32, scores (T, 17) float32) in h36m17 order; missing joints have
        coordinates 0, so whatever a client put there cannot leak into the model.

    Raises:
        ValueError: with a message saying exactly what is wrong.
    """
    check_image(width, height, layout)
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 2):
        raise ValueError(f"keypoints must have shape (frames, {NUM_JOINTS}, 2), got {kp.shape}")
    if kp.shape[0] == 0:
        raise ValueError("keypoints hold no frames")
    # Few whole-array passes: this runs for every streamed frame. NaN fails every comparison, so one
    # range test also rejects NaN and inf.
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        if sc.shape != kp.shape[:2]:
            raise ValueError(f"scores must have shape {kp.shape[:2]} (frames, joints), got {sc.shape}")
        if not ((sc >= 0.0) & (sc <= 1.0)).all():
            raise ValueError("scores must be finite numbers in [0, 1]")
        kp = np.where((sc > 0)[..., None], kp, 0.0)  # a missing joint may carry NaN; it is ignored either way
    else:
        sc = None
    if not (np.abs(kp) <= MAX_PIXELS).all():
        if not np.isfinite(kp).all():
            raise ValueError("keypoints must be finite numbers (NaN/inf found in a joint whose score is > 0)")
        raise ValueError(f"keypoints must be within ±{MAX_PIXELS:,} pixels")
    kp_h36m, sc_h36m = to_h36m17(kp, sc, layout)
    norm = normalize_screen_coordinates(kp_h36m, width, height)
    if sc is not None or layout != "h36m17":  # else every joint is present: nothing to mask
        norm = mask_missing(norm, sc_h36m)
    return norm, sc_h36m.astype(np.float32)
