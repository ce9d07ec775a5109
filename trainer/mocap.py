"""Loading the mocap npz files (17-joint world poses, mm, Z up, 30 fps; see shared/data/mocap/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Mocap:
    """All segments of one split, concatenated.

    Attributes:
        positions_mm: (N, 17, 3) world joint positions, mm, Z up.
        clip_starts, clip_lengths: (S,) first row and length of each segment.
        subject, clip_name, action: (S,) strings per segment.
        fps: frame rate of the data (30).
    """

    positions_mm: np.ndarray
    clip_starts: np.ndarray
    clip_lengths: np.ndarray
    subject: np.ndarray
    clip_name: np.ndarray
    action: np.ndarray
    fps: float
    path: str

    @classmethod
    def load(cls, path: str | Path) -> Mocap:
        with np.load(path, allow_pickle=False) as d:
            return cls(
                positions_mm=d["positions"].astype(np.float32),
                clip_starts=d["clip_starts"].astype(np.int64),
                clip_lengths=d["clip_lengths"].astype(np.int64),
                subject=d["subject"].astype(str),
                clip_name=d["clip_name"].astype(str),
                action=d["action"].astype(str),
                fps=float(d["fps"]),
                path=str(path),
            )

    def segment(self, i: int) -> np.ndarray:
        """(T, 17, 3) world positions of segment i."""
        s = int(self.clip_starts[i])
        return self.positions_mm[s : s + int(self.clip_lengths[i])]

    def __len__(self) -> int:
        return len(self.clip_starts)

    def describe(self) -> dict[str, object]:
        """What a checkpoint records about its training data."""
        return {
            "file": Path(self.path).name,
            "subjects": sorted(set(self.subject.tolist())),
            "segments": len(self),
            "frames": int(self.clip_lengths.sum()),
            "fps": self.fps,
        }
