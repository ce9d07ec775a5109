"""The public Python API: `load_lifter(...).lift(keypoints_px, width=, height=, fps=) -> (T, 17, 3) mm`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from poselift.checkpoint import checkpoint_id, load_checkpoint
from poselift.inputs import check_camera, prepare_keypoints
from poselift.model import LiftingNetwork
from poselift.runtimes import AUTO, Runtime, TorchRuntime, build_runtime, resolve_backend
from poselift.skeleton import H36M17_JOINTS
from poselift.windows import causal_windows

DEFAULT_CHUNK = 4096  # windows per forward pass when lifting long sequences offline


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given ("cpu", "cuda", "auto"), else CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Lifter:
    """A loaded lifting model: causal, batched lifting of 2D keypoint sequences to 3D poses.

    `model` is always the torch module; `runtime` (`poselift.runtimes`) is what `lift_windows` runs it with,
    `backend` names it ("torch", "torchscript", "compile" or "onnx").
    """

    def __init__(
        self,
        model: LiftingNetwork,
        metadata: dict[str, Any] | None = None,
        path: Path | None = None,
        runtime: Runtime | None = None,
    ):
        """Wrap a network; `metadata` and `path` describe the checkpoint it came from (None: in training).

        `runtime` None runs the module eagerly, so a model still being trained is lifted with its current
        weights; the other runtimes hold a snapshot of the weights taken when they were built.
        """
        self.model = model
        self.runtime: Runtime = runtime if runtime is not None else TorchRuntime(model)
        self.metadata = metadata or {}
        self.path = path
        self.window: int = model.config.window
        self.joints: tuple[str, ...] = H36M17_JOINTS
        self.checkpoint_id = checkpoint_id(path) if path is not None else "unsaved"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def backend(self) -> str:
        return self.runtime.name

    def lift_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The pose of the newest frame of each causal window.

        Args:
            windows_norm: (N, W, 17, 2) screen-normalised keypoints, oldest frame first.
            scores: (N, W, 17).

        Returns:
            (N, 17, 3) float32 root-relative poses, mm.
        """
        out = [
            self.runtime(windows_norm[start : start + DEFAULT_CHUNK], scores[start : start + DEFAULT_CHUNK])
            for start in range(0, len(windows_norm), DEFAULT_CHUNK)
        ]
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


def load_lifter(
    name_or_path: str | Path = "seq2seq",
    device: str | torch.device | None = None,
    backend: str = AUTO,
    onnx_path: str | Path | None = None,
    threads: int | None = None,
) -> Lifter:
    """Load a shipped lifter ("seq2seq", the default, or "framewise") or a checkpoint path.

    Args:
        name_or_path: a shipped name or a checkpoint path.
        device: "cpu", "cuda", "auto" or None (CUDA when present).
        backend: how `lift_windows` runs the network: "auto" (CUDA: "torch"; CPU: "onnx" when onnxruntime
            is installed, the fastest measured on CPU), "torch", "torchscript", "compile" or "onnx"; see
            `poselift.runtimes`.
        onnx_path: for "onnx" (and "auto" on CPU): a file from `poselift export --onnx` of this checkpoint,
            instead of exporting in memory at load (~3 s).
        threads: ONNX Runtime intra-op threads; None: `torch.get_num_threads()`.

    Raises:
        ValueError: an unknown backend, "onnx" on CUDA, or an ONNX file of other weights.
        FileNotFoundError: no such checkpoint.
    """
    target = pick_device(device)
    resolved = resolve_backend(backend, target)
    if onnx_path is not None and resolved != "onnx":
        raise ValueError(f"onnx_path is for the onnx backend, not {resolved!r}")
    model, meta, path = load_checkpoint(name_or_path, target)
    runtime = build_runtime(resolved, model.eval(), checkpoint_id(path), onnx_path, threads)
    return Lifter(model, meta, path, runtime)
