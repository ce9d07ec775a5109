"""The poses file: one person's 2D input and 3D output for a clip, as JSON or npz with the same keys.

Keys (docs/outputs.md): `fps` (float), `width`, `height` (px), `focal_px` (float), `joints` (17 names,
h36m17 order), `keypoints_px` (T, 17, 2), `scores` (T, 17), `poses_mm` (T, 17, 3; root-relative, camera frame:
x right, y down, z forward), `trajectory_mm` (T, 3; the pelvis in the camera frame, zeros if unknown),
`visible` (T,), optional `track_id` (int) and `frame_index` (T,) (the video frame number of each row).

Every tool that reads the file (BVH export, render, viewer) goes through `load_poses_file`, so a bad file is
one clear `PosesFileError` wherever it is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poselift.skeleton import H36M17_JOINTS, NUM_JOINTS


class PosesFileError(ValueError):
    """A poses file that is missing, unreadable, or whose keys, shapes or values are wrong."""


@dataclass(frozen=True)
class Poses:
    """One person's clip: the poses file's contents as arrays (float64)."""

    fps: float
    width: int
    height: int
    focal_px: float
    keypoints_px: np.ndarray  # (T, 17, 2)
    scores: np.ndarray  # (T, 17)
    poses_mm: np.ndarray  # (T, 17, 3) root-relative, camera frame
    trajectory_mm: np.ndarray  # (T, 3) pelvis in the camera frame; zeros if unknown
    visible: np.ndarray  # (T,)
    track_id: int | None = None
    frame_index: np.ndarray | None = None  # (T,) int video frame numbers

    @property
    def num_frames(self) -> int:
        return int(self.poses_mm.shape[0])

    @property
    def has_trajectory(self) -> bool:
        """Whether the pelvis positions are known (the file stores zeros when they are not)."""
        return bool(np.any(self.trajectory_mm != 0))


def _array(data: dict[str, Any], key: str, shape: tuple[int | None, ...], path: Path) -> np.ndarray:
    if key not in data:
        raise PosesFileError(f"{path}: missing key {key!r}")
    try:
        value = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PosesFileError(f"{path}: {key!r} is not numeric: {error}") from None
    wrong = value.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    )
    if wrong:
        wanted = "(" + ", ".join("T" if n is None else str(n) for n in shape) + ")"
        raise PosesFileError(f"{path}: {key!r} has shape {value.shape}, expected {wanted}")
    return value


def _scalar(data: dict[str, Any], key: str, path: Path) -> float:
    if key not in data:
        raise PosesFileError(f"{path}: missing key {key!r}")
    try:
        return float(np.asarray(data[key]).reshape(()))
    except (TypeError, ValueError):
        raise PosesFileError(f"{path}: {key!r} must be one number, got {data[key]!r}") from None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PosesFileError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PosesFileError(f"{path}: not a readable JSON file: {error}") from None
        if not isinstance(data, dict):
            raise PosesFileError(f"{path}: expected a JSON object with the poses file's keys")
        return data
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as error:
            raise PosesFileError(f"{path}: not a readable npz file: {error}") from None
    raise PosesFileError(f"{path}: unknown poses file type {path.suffix!r}; expected .json or .npz")


def load_poses_file(path: str | Path) -> Poses:
    """Read and check a poses file (.json or .npz).

    Raises:
        PosesFileError: the file is missing or unreadable, a key is missing, a shape disagrees with the
            others, a value is not finite where it must be, or `joints` is not the h36m17 order.
    """
    path = Path(path)
    data = _read(path)
    if "joints" in data and tuple(str(name) for name in np.asarray(data["joints"]).tolist()) != H36M17_JOINTS:
        names = ", ".join(H36M17_JOINTS)
        raise PosesFileError(f"{path}: 'joints' must be the 17 h36m17 names in order ({names})")
    poses_mm = _array(data, "poses_mm", (None, NUM_JOINTS, 3), path)
    frames = poses_mm.shape[0]
    if frames == 0:
        raise PosesFileError(f"{path}: the file holds no frames")
    if not np.all(np.isfinite(poses_mm)):
        raise PosesFileError(f"{path}: 'poses_mm' holds non-finite values")
    fps = _scalar(data, "fps", path)
    width, height = _scalar(data, "width", path), _scalar(data, "height", path)
    if not (fps > 0 and width > 0 and height > 0):
        raise PosesFileError(f"{path}: fps, width and height must be positive")
    keypoints_px = _array(data, "keypoints_px", (frames, NUM_JOINTS, 2), path)
    scores = np.ones((frames, NUM_JOINTS))
    if "scores" in data:
        scores = _array(data, "scores", (frames, NUM_JOINTS), path)
    trajectory_mm = (
        _array(data, "trajectory_mm", (frames, 3), path) if "trajectory_mm" in data else np.zeros((frames, 3))
    )
    if not np.all(np.isfinite(trajectory_mm)):
        raise PosesFileError(f"{path}: 'trajectory_mm' holds non-finite values")
    visible = _array(data, "visible", (frames,), path) if "visible" in data else np.ones(frames)
    frame_index = None
    if data.get("frame_index") is not None:
        frame_index = _array(data, "frame_index", (frames,), path).astype(np.int64)
    track_id = None if data.get("track_id") is None else int(_scalar(data, "track_id", path))
    focal_px = float("nan")  # unknown
    if data.get("focal_px") is not None:
        focal_px = _scalar(data, "focal_px", path)
    return Poses(
        fps=fps,
        width=int(width),
        height=int(height),
        focal_px=focal_px,
        keypoints_px=keypoints_px,
        scores=scores,
        poses_mm=poses_mm,
        trajectory_mm=trajectory_mm,
        visible=visible,
        track_id=track_id,
        frame_index=frame_index,
    )


def poses_to_dict(poses: Poses) -> dict[str, Any]:
    """The poses file's keys as plain arrays and numbers (what `save_poses_file` writes)."""
    out: dict[str, Any] = {
        "fps": float(poses.fps),
        "width": int(poses.width),
        "height": int(poses.height),
        "focal_px": float(poses.focal_px),
        "joints": list(H36M17_JOINTS),
        "keypoints_px": poses.keypoints_px,
        "scores": poses.scores,
        "poses_mm": poses.poses_mm,
        "trajectory_mm": poses.trajectory_mm,
        "visible": poses.visible,
    }
    if poses.track_id is not None:
        out["track_id"] = int(poses.track_id)
    if poses.frame_index is not None:
        out["frame_index"] = poses.frame_index
    return out


def _strict_json(value: Any) -> Any:
    """Arrays as lists and NaN/inf as null (strict JSON, which browsers parse); null reads back as NaN."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        out = value.astype(object)
        out[~np.isfinite(value)] = None
        return out.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_poses_file(path: str | Path, poses: Poses) -> None:
    """Write a poses file; the suffix (.json or .npz) chooses the encoding.

    JSON is strict (no NaN): a missing value, such as the keypoints of an unseen joint, is written as null.
    """
    path = Path(path)
    data = poses_to_dict(poses)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({k: _strict_json(v) for k, v in data.items()}, allow_nan=False))
    elif path.suffix.lower() == ".npz":
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in data.items()}
        np.savez(path, **arrays)
    else:
        raise PosesFileError(f"{path}: unknown poses file type {path.suffix!r}; expected .json or .npz")
