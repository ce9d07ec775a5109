"""Loading the mocap npz files (17-joint world poses, mm, Z up, 30 fps; see data/mocap/README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "POSELIFT_DATA_DIR"
# The source checkout's data/ (trainer/ sits beside it); an installed trainer has none and needs the setting.
CHECKOUT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SPLITS = {"train": "cmu_h36m17_train.npz", "val": "cmu_h36m17_val.npz"}


def data_dir() -> Path:
    """The folder that holds `mocap/`: `$POSELIFT_DATA_DIR` if set, else the source checkout's `data/`.

    Raises:
        FileNotFoundError: neither exists, with what to set.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    folder = Path(configured).expanduser() if configured else CHECKOUT_DATA_DIR
    if not folder.is_dir():
        where = f"{DATA_DIR_ENV}={configured}" if configured else f"the source checkout's {folder}"
        raise FileNotFoundError(
            f"no training data folder: {where} does not exist. Set {DATA_DIR_ENV} to a folder holding "
            "mocap/cmu_h36m17_train.npz and mocap/cmu_h36m17_val.npz (data/ of the poselift repository), "
            "or name the files with --data / --val."
        )
    return folder


def split_path(split: str) -> Path:
    """The CMU mocap file of `split` ("train" or "val") under `data_dir()`; FileNotFoundError if missing."""
    path = data_dir() / "mocap" / SPLITS[split]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {DATA_DIR_ENV} must name a folder holding mocap/{SPLITS[split]}"
        )
    return path


@dataclass(frozen=True)
class Mocap:
    """All segments of one split, concatenated.

    Attributes:
        positions_mm: (N, 17, 3) world joint positions, mm, Z up.
        clip_starts, clip_lengths: (S,) first row and length of each segment.
        subject, clip_name, action: (S,) strings per segment.
        fps: frame rate of the data (30).
        joint_exact: (17,) False for joints the data only estimates (Bandai's head points); all True when
            the file does not say.
    """

    positions_mm: np.ndarray
    clip_starts: np.ndarray
    clip_lengths: np.ndarray
    subject: np.ndarray
    clip_name: np.ndarray
    action: np.ndarray
    fps: float
    path: str
    joint_exact: np.ndarray = field(default_factory=lambda: np.ones(17, dtype=bool))

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
                joint_exact=d["joint_exact"].astype(bool) if "joint_exact" in d.files else np.ones(17, bool),
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
