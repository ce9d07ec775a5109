"""The Human3.6M 17-joint skeleton poselift speaks, and conversion from COCO-17 detector output.

Joint order (docs/conventions.md): pelvis, right_hip, right_knee, right_ankle, left_hip, left_knee,
left_ankle, spine, thorax, neck, head, left_shoulder, left_elbow, left_wrist, right_shoulder, right_elbow,
right_wrist.
"""

from __future__ import annotations

import numpy as np

H36M17_JOINTS: tuple[str, ...] = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "spine",
    "thorax",
    "neck",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)
NUM_JOINTS = len(H36M17_JOINTS)
ROOT = 0

# Parent of each joint (-1 for the pelvis); the same tree as the mocap data.
H36M17_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# Joints whose mirror image is a different joint (used by the left/right flip augmentation).
H36M17_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
H36M17_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)


def flip_permutation() -> np.ndarray:
    """Index array that swaps every left joint with its right twin, shape (17,)."""
    perm = np.arange(NUM_JOINTS)
    perm[list(H36M17_LEFT)] = H36M17_RIGHT
    perm[list(H36M17_RIGHT)] = H36M17_LEFT
    return perm


# The paper's joint groups for the temporal-smoothness loss (Hossain & Little, Sec. 3.2).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    # torso + head: hips, spine, thorax, neck, head, shoulders (the pelvis is always 0 after centring)
    "torso_head": (0, 1, 4, 7, 8, 9, 10, 11, 14),
    # limb-mid: knees and elbows
    "limb_mid": (2, 5, 12, 15),
    # limb-terminal: ankles and wrists
    "limb_terminal": (3, 6, 13, 16),
}

COCO17_JOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

LAYOUTS: tuple[str, ...] = ("h36m17", "coco17")


def _coco_weights() -> np.ndarray:
    """(17 h36m, 17 coco) matrix: each h36m17 joint as a weighted sum of COCO joints (rows sum to 1)."""
    w = np.zeros((NUM_JOINTS, len(COCO17_JOINTS)))

    def mean_of(row: int, cols: tuple[int, ...], weight: float = 1.0) -> None:
        w[row, list(cols)] += weight / len(cols)

    for h36m, coco in (
        (1, 12),
        (2, 14),
        (3, 16),
        (4, 11),
        (5, 13),
        (6, 15),
        (11, 5),
        (12, 7),
        (13, 9),
        (14, 6),
        (15, 8),
        (16, 10),
    ):
        w[h36m, coco] = 1.0
    mean_of(0, (11, 12))  # pelvis = mid-hips
    mean_of(8, (5, 6))  # thorax = mid-shoulders
    mean_of(7, (5, 6, 11, 12))  # spine = midpoint of pelvis and thorax
    mean_of(9, (1, 2))  # neck/nose: the mocap's joint 9 sits at eye level, between the eyes
    # head top: COCO has none; extrapolate from the ears half the ear-to-shoulder distance upwards
    # (head_top = 1.5 * mid_ears - 0.5 * mid_shoulders), which puts it ~10 cm above the ears.
    mean_of(10, (3, 4), 1.5)
    mean_of(10, (5, 6), -0.5)
    return w


_COCO_TO_H36M = _coco_weights()


def coco17_to_h36m17(
    keypoints_px: np.ndarray, scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Convert COCO-17 keypoints to the h36m17 layout, carrying confidence scores.

    Args:
        keypoints_px: (..., 17, 2) COCO-ordered pixel coordinates.
        scores: (..., 17) confidences in [0, 1]; None means every joint is present (score 1).

    Returns:
        (keypoints_px (..., 17, 2), scores (..., 17)) in h36m17 order. A derived joint is a fixed weighted
        combination of its sources and gets the minimum of their scores, so it is missing if any source is.
    """
    keypoints_px = np.asarray(keypoints_px, dtype=np.float64)
    if scores is None:
        scores = np.ones(keypoints_px.shape[:-1], dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    out_kp = np.einsum("hc,...cd->...hd", _COCO_TO_H36M, keypoints_px)
    used = _COCO_TO_H36M != 0  # (17, 17)
    out_sc = np.where(used, scores[..., None, :], np.inf).min(axis=-1)
    return out_kp, out_sc


def to_h36m17(
    keypoints_px: np.ndarray, scores: np.ndarray | None, layout: str
) -> tuple[np.ndarray, np.ndarray]:
    """Bring keypoints of any supported layout to h36m17 with scores ((..., 17, 2), (..., 17))."""
    if layout == "h36m17":
        kp = np.asarray(keypoints_px, dtype=np.float64)
        sc = np.ones(kp.shape[:-1]) if scores is None else np.asarray(scores, dtype=np.float64)
        return kp, sc
    if layout == "coco17":
        return coco17_to_h36m17(keypoints_px, scores)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
