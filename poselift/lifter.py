"""The public Python API: `load_lifter(...).lift(keypoints_px, width=, height=, fps=) -> (T, 17, 3) mm`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from poselift.checkpoint import checkpoint_id, load_checkpoint
from poselift.inputs import check_camera, prepare_keypoints
from poselift.model import LiftingNetwork
from poselift.skeleton import H36M17_JOINTS
from poselift.windows import causal_windows

DEFAULT_CHUNK = 4096  # windows per forward pass when lifting long sequences offline


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given ("cpu", "cuda", "auto"), else CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Lifter:
    """A loaded lifting model: causal, batched lifting of 2D keypoint sequences to 3D poses."""

    def __init__(
        self, model: LiftingNetwork, metadata: dict[str, Any] | None = None, path: Path | None = None
    ):
        """Wrap a network; `metadata` and `path` describe the checkpoint it came from (None: in training)."""
        self.model = model
        self.metadata = metadata or {}
        self.path = path
        self.window: int = model.config.window
        self.joints: tuple[str, ...] = H36M17_JOINTS
        self.checkpoint_id = checkpoint_id(path) if path is not None else "unsaved"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def lift_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The pose of the newest frame of each causal window.

        Args:
            windows_norm: (N, W, 17, 2) screen-normalised keypoints, oldest frame first.
            scores: (N, W, 17).

        Returns:
            (N, 17, 3) float32 root-relative poses, mm.
        """
        was_training = self.model.training
        self.model.eval()
        out = []
        for start in range(0, len(windows_norm), DEFAULT_CHUNK):
            kp = torch.from_numpy(np.ascontiguousarray(windows_norm[start : start + DEFAULT_CHUNK]))
            sc = torch.from_numpy(np.ascontiguousarray(scores[start : start + DEFAULT_CHUNK]))
            poses = self.model(kp.to(self.device, torch.float32), sc.to(self.device, torch.float32))
            out.append(poses[:, -1].float().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, len(self.joints), 3), np.float32)

    def lift_normalised(self, keypoints_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(T, 17, 2) normalised keypoints, (T, 17) scores -> (T, 17, 3) mm; all windows in one pass."""
        return self.lift_windows(
            causal_windows(keypoints_norm, self.window), causal_windows(scores, self.window)
        )

    def lift(
        self,
        keypoints_px: np.ndarray,
        width: float,
        height: float,
        fps: float = 50.0,
        scores: np.ndarray | None = None,
        layout: str = "h36m17",
    ) -> np.ndarray:
        """Lift a 2D keypoint sequence to 3D.

        Args:
            keypoints_px: (T, 17, 2) pixels, origin top-left, x right, y down.
            width, height: image size in pixels.
            fps: the video's frame rate (the shipped models are trained for 25–60 fps).
            scores: (T, 17) confidences in [0, 1]; 0 = missing joint. None: all present.
            layout: "h36m17" or "coco17".

        Returns:
            (T, 17, 3) float32 poses in the camera frame, mm, pelvis at the origin. Causal: pose t uses
            frames <= t only.
        """
        check_camera(width, height, fps, layout)
        kp_norm, sc = prepare_keypoints(keypoints_px, width, height, scores, layout)
        return self.lift_normalised(kp_norm, sc)


def load_lifter(name_or_path: str | Path = "seq2seq", device: str | torch.device | None = None) -> Lifter:
    """Load a shipped lifter ("seq2seq", the default, or "framewise") or a checkpoint path."""
    model, meta, path = load_checkpoint(name_or_path, pick_device(device))
    return Lifter(model.eval(), meta, path)
