"""The public Python API: `load_lifter(...).lift(keypoints_px, width=, height=, fps=) -> (T, 17, 3) mm`, and
`lift_full(...)` for the pelvis trajectory and how much of each pose was seen as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from poselift.checkpoint import DEFAULT_MODEL, checkpoint_id, load_checkpoint
from poselift.geometry import camera_in_normalised_units
from poselift.inputs import check_camera, prepare_keypoints
from poselift.model import LiftingNetwork
from poselift.runtimes import AUTO, Runtime, TorchRuntime, build_runtime, resolve_backend
from poselift.sequence import (
    BoneState,
    SequenceOutput,
    clip_inputs,
    finish,
    frame_step,
)
from poselift.skeleton import H36M17_JOINTS, NUM_JOINTS

MODES = ("causal", "offline")

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
        config = model.config
        # The tcn is trained on windows at a fixed rate and sees every camera resampled to it; the older
        # models were trained across 25-60 fps and see frames as they come.
        self.model_fps: float | None = config.frame_rate or None
        self.has_root: bool = config.kind == "tcn"  # a pelvis head: trajectories
        self.offline_capable: bool = config.kind == "tcn"  # a centre-frame head: the offline mode
        # One person, one skeleton: the tcn's poses get the person's running bone lengths. The paper's
        # models are served as trained.
        self.consistent_bones: bool = config.kind == "tcn"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def backend(self) -> str:
        return self.runtime.name

    def run_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Every head of each window (`poselift.export.WindowHeads`).

        Args:
            windows_norm: (N, W, 17, 2) screen-normalised keypoints, oldest frame first.
            scores: (N, W, 17).

        Returns:
            (N, 2, 18, 3) float32: [:, 0] the newest frame, [:, 1] the centre frame; rows 0-16 the
            root-relative pose (mm), row 17 the root code.
        """
        out = [
            self.runtime(windows_norm[start : start + DEFAULT_CHUNK], scores[start : start + DEFAULT_CHUNK])
            for start in range(0, len(windows_norm), DEFAULT_CHUNK)
        ]
        return np.concatenate(out) if out else np.zeros((0, 2, NUM_JOINTS + 1, 3), np.float32)

    def lift_windows(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The network's pose of the newest frame of each window, (N, 17, 3) float32 mm (before bone
        lengths are made consistent: see `lift_sequence`)."""
        return np.ascontiguousarray(self.run_windows(windows_norm, scores)[:, 0, :NUM_JOINTS])

    def lift_sequence(
        self,
        keypoints_norm: np.ndarray,
        scores: np.ndarray,
        fps: float,
        camera_norm: tuple[float, np.ndarray],
        mode: str = "causal",
    ) -> SequenceOutput:
        """Lift a whole normalised sequence (`poselift.sequence`, the path sessions share).

        Args:
            keypoints_norm: (T, 17, 2) normalised keypoints; scores: (T, 17).
            fps: the camera's frame rate; camera_norm: (focal, principal) in normalised units.
            mode: "causal" (pose t from frames <= t) or "offline" (the mean of a forward pass, a pass over
                the reversed clip and the centre-frame head over centred windows: every pose sees the
                whole clip; `poselift.sequence.offline_inputs`).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "offline" and not self.offline_capable:
            raise ValueError(f"the offline mode is the tcn's; the {self.kind} model lifts causally only")
        step = frame_step(fps, self.model_fps)
        win_kp, win_sc = clip_inputs(keypoints_norm, scores, self.window, step, mode == "offline")
        heads = self.run_windows(win_kp, win_sc)
        bones = BoneState.empty() if self.consistent_bones else None
        out, _ = finish(heads, win_sc, scores, camera_norm, bones, self.has_root, mode == "offline")
        return out

    @property
    def kind(self) -> str:
        return str(self.model.config.kind)

    def lift_normalised(
        self, keypoints_norm: np.ndarray, scores: np.ndarray, fps: float = 30.0
    ) -> np.ndarray:
        """(T, 17, 2) normalised keypoints, (T, 17) scores -> (T, 17, 3) mm, causal, in one batched pass."""
        return self.lift_sequence(keypoints_norm, scores, fps, (1.0, np.zeros(2))).poses_mm

    def lift(
        self,
        keypoints_px: np.ndarray,
        width: float,
        height: float,
        fps: float = 50.0,
        scores: np.ndarray | None = None,
        layout: str = "h36m17",
        mode: str = "causal",
    ) -> np.ndarray:
        """Lift a 2D keypoint sequence to 3D.

        Args:
            keypoints_px: (T, 17, 2) pixels, origin top-left, x right, y down.
            width, height: image size in pixels.
            fps: the video's frame rate (the tcn resamples any rate to the 30 fps it was trained at; the
                seq2seq and framewise models are trained for 25–60 fps).
            scores: (T, 17) confidences in [0, 1]; 0 = missing joint. None: all present.
            layout: "h36m17" or "coco17".
            mode: "causal" (default: pose t uses frames <= t only, as a live session) or "offline" (a
                recorded clip: each pose also sees the frames after it; tcn only).

        Returns:
            (T, 17, 3) float32 poses in the camera frame, mm, pelvis at the origin.
        """
        return self.lift_full(keypoints_px, width, height, fps, scores, layout, mode=mode).poses_mm

    def lift_full(
        self,
        keypoints_px: np.ndarray,
        width: float,
        height: float,
        fps: float = 50.0,
        scores: np.ndarray | None = None,
        layout: str = "h36m17",
        focal_px: float | None = None,
        principal_px: tuple[float, float] | None = None,
        mode: str = "causal",
    ) -> SequenceOutput:
        """`lift`, with the pelvis trajectory and each pose's visible fraction.

        Args:
            focal_px: the camera's focal length in pixels; None: `poselift.geometry.default_focal_px`
                (a 65° field of view across the longer side). It scales the trajectory's depth only.
            principal_px: the principal point (cx, cy) in pixels; None: the image centre.
            (the others as `lift`.)

        Returns:
            `SequenceOutput`: poses_mm (T, 17, 3), root_mm (T, 3) the pelvis in the camera frame (None for
            models without a root head), visible (T,) the fraction of each pose's window that was seen.
        """
        check_camera(width, height, fps, layout)
        kp_norm, sc = prepare_keypoints(keypoints_px, width, height, scores, layout)
        camera = camera_in_normalised_units(width, height, focal_px, principal_px)
        return self.lift_sequence(kp_norm, sc, fps, camera, mode)


def load_lifter(
    name_or_path: str | Path = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    backend: str = AUTO,
    onnx_path: str | Path | None = None,
    threads: int | None = None,
) -> Lifter:
    """Load a shipped lifter ("tcn", the default; "seq2seq", the paper's; "framewise") or a checkpoint path.

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
