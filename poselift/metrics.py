"""Accuracy and jitter metrics over (..., J, 3) poses in millimetres (numpy).

All errors are over every joint given, the root included (zero error after centring), as the paper reports.
"""

from __future__ import annotations

import numpy as np


def _check(predicted: np.ndarray, target: np.ndarray) -> None:
    assert predicted.shape == target.shape, f"shape mismatch {predicted.shape} vs {target.shape}"
    assert predicted.shape[-1] == 3, f"expected (..., J, 3) poses, got {predicted.shape}"


def mpjpe(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint position error, "Protocol #1" (no alignment), in the input's units."""
    _check(predicted, target)
    return float(np.mean(np.linalg.norm(predicted - target, axis=-1)))


def per_joint_error(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Protocol #1 error of each joint, averaged over all leading axes: (J,)."""
    _check(predicted, target)
    err = np.linalg.norm(predicted - target, axis=-1)
    return err.reshape(-1, err.shape[-1]).mean(axis=0)


def procrustes_align(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Align each (J, 3) predicted pose to its target by a similarity (rotation, scale, translation).

    Args:
        predicted: (N, J, 3) or (J, 3).
        target: same shape.

    Returns:
        The aligned predictions, same shape, minimising the squared error to `target` frame by frame.
    """
    _check(predicted, target)
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1, *predicted.shape[-2:])  # (N, J, 3)
    tgt = np.asarray(target, dtype=np.float64).reshape(pred.shape)
    mu_p = pred.mean(axis=1, keepdims=True)
    mu_t = tgt.mean(axis=1, keepdims=True)
    p0, t0 = pred - mu_p, tgt - mu_t
    norm_p = np.linalg.norm(p0, axis=(1, 2), keepdims=True)
    norm_t = np.linalg.norm(t0, axis=(1, 2), keepdims=True)
    norm_p = np.maximum(norm_p, 1e-12)
    norm_t = np.maximum(norm_t, 1e-12)
    p0, t0 = p0 / norm_p, t0 / norm_t
    h = np.matmul(t0.transpose(0, 2, 1), p0)  # (N, 3, 3)
    u, s, vt = np.linalg.svd(h)
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    # Undo a reflection so that R is a proper rotation.
    det_sign = np.sign(np.linalg.det(r))[:, None]
    v[:, :, -1] *= det_sign
    s[:, -1] *= det_sign[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    tr = s.sum(axis=1)[:, None, None]
    scale = tr * norm_t / norm_p
    aligned = scale * np.matmul(pred - mu_p, r) + mu_t
    return aligned.reshape(predicted.shape)


def p_mpjpe(predicted: np.ndarray, target: np.ndarray) -> float:
    """Procrustes-aligned MPJPE, "Protocol #2": per-frame similarity alignment (with scale), then MPJPE."""
    return mpjpe(procrustes_align(predicted, target), np.asarray(target, dtype=np.float64))


def mpjve(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint velocity error over (T, J, 3) sequences: mean ‖Δpred_t − Δtarget_t‖, units per frame.

    The jitter measure: first differences along axis 0 (time), so sequences need at least two frames.
    """
    _check(predicted, target)
    assert predicted.shape[0] >= 2, "MPJVE needs at least two frames"
    return mpjpe(np.diff(predicted, axis=0), np.diff(target, axis=0))


# Left/right limb bones of the h36m17 skeleton, as (left child joint, right child joint): each bone joins the
# joint to its parent (upper arm, forearm, thigh, shin).
LIMB_BONE_PAIRS: tuple[tuple[int, int], ...] = ((12, 15), (13, 16), (5, 2), (6, 3))


def _bone_lengths(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 16) lengths of the bones joint j -> parent, j = 1 … 16."""
    from poselift.skeleton import H36M17_PARENTS

    child = np.arange(1, poses.shape[1])
    parent = np.array(H36M17_PARENTS[1:])
    return np.linalg.norm(poses[:, child] - poses[:, parent], axis=-1)


def bone_length_cv(poses: np.ndarray) -> float:
    """How much one person's bones change length over a sequence: the median over bones of each bone's
    coefficient of variation over time (std / mean), a fraction. A rigid skeleton scores 0."""
    lengths = _bone_lengths(np.asarray(poses, np.float64))
    return float(np.median(lengths.std(axis=0) / np.maximum(lengths.mean(axis=0), 1e-9)))


def limb_asymmetry(poses: np.ndarray) -> float:
    """Left/right limb asymmetry: the mean over frames and limb bones of |left - right| / their mean."""
    lengths = _bone_lengths(np.asarray(poses, np.float64))
    ratios = [
        np.abs(lengths[:, lc - 1] - lengths[:, rc - 1])
        / np.maximum((lengths[:, lc - 1] + lengths[:, rc - 1]) / 2, 1e-9)
        for lc, rc in LIMB_BONE_PAIRS
    ]
    return float(np.mean(ratios))
