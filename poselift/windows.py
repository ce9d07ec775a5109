"""Causal windowing: the one place that decides which past frames a pose sees.

Pose t is computed from frames t-W+1 … t. Before the first frame the window is padded by repeating the first
frame (edge padding), so a sequence's first poses exist and depend only on frames already seen. Offline
lifting, REST sessions and gRPC streams all window through `causal_window_indices`, so they agree exactly.
"""

from __future__ import annotations

import numpy as np


def causal_window_indices(num_frames: int, window: int, first: int = 0) -> np.ndarray:
    """Frame indices of every causal window, shape (num_frames - first, window).

    Row r holds the indices of the window ending at frame `first + r`, oldest first, clamped at frame 0.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ends = np.arange(first, num_frames)[:, None]  # (N, 1)
    offsets = np.arange(-window + 1, 1)[None, :]  # (1, W)
    return np.maximum(ends + offsets, 0)


def causal_windows(frames: np.ndarray, window: int, first: int = 0) -> np.ndarray:
    """(T, ...) per-frame arrays -> (T - first, W, ...) causal windows, edge-padded at the start."""
    return np.asarray(frames)[causal_window_indices(len(frames), window, first)]


def window_times(ends: np.ndarray, window: int, step: float) -> np.ndarray:
    """Sample times of windows ending at `ends`, oldest first: end - k·step for k = W-1 … 0, clamped at 0.

    Times are in input frames; `step` is input frames per model frame (input fps / the model's fps), so a
    window always spans the same duration whatever the camera's frame rate.

    Args:
        ends: (N,) end times, in input frames (fractional for the offline mode's centred windows).
        window: W, model frames per window.
        step: input frames per model frame (> 0).

    Returns:
        (N, W) float64 times.
    """
    offsets = np.arange(window - 1, -1, -1, dtype=np.float64) * step  # (W,)
    return np.maximum(np.asarray(ends, np.float64)[:, None] - offsets[None, :], 0.0)


def sample_windows(
    keypoints: np.ndarray, scores: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and scores at fractional frame times, linearly interpolated between the two frames around.

    A joint is present at a time between two frames only when it is present in both (its score is then the
    smaller of the two); at a whole frame time it is that frame's joint, exactly. Times past the last frame
    take the last frame (edge padding, for the offline mode's windows at a clip's end).

    Args:
        keypoints: (T, J, 2) normalised keypoints (missing joints 0); scores: (T, J).
        times: (N, W) times in frames, >= 0.

    Returns:
        (N, W, J, 2) float32 keypoints and (N, W, J) float32 scores.
    """
    last = len(keypoints) - 1
    times = np.minimum(times, last)
    i0 = np.floor(times).astype(np.int64)
    frac = times - i0
    if not frac.any():  # every time is a frame: plain indexing, exactly the frames
        return keypoints[i0], scores[i0]
    i1 = np.minimum(i0 + 1, last)
    w = frac[..., None].astype(np.float32)
    s0, s1 = scores[i0], scores[i1]
    between = frac[..., None] > 0
    present = (s0 > 0) & (~between | (s1 > 0))
    sc = np.where(present, np.where(between, np.minimum(s0, s1), s0), 0.0).astype(np.float32)
    kp = keypoints[i0] * (1.0 - w[..., None]) + keypoints[i1] * w[..., None]
    return np.where(present[..., None], kp, 0.0).astype(np.float32), sc
