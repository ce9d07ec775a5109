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
