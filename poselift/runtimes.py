"""Runtime backends behind `Lifter.lift_windows`: one network, run by eager PyTorch, TorchScript,
torch.compile or ONNX Runtime.

Every backend is a `Runtime`, a callable

    (windows_norm (N, W, 17, 2) float32, scores (N, W, 17) float32) numpy -> heads (N, 2, 18, 3) float32

returning every head of each window (`poselift.export.WindowHeads`: the newest frame's pose and root code,
what serving computes per incoming frame, and the centre frame's, for offline clips).

- `"torch"`: the module, run eagerly; any device; the only one that follows later changes to the weights.
- `"torchscript"`: `torch.jit.trace` (the batch stays dynamic) + `torch.jit.freeze`; any device.
- `"compile"`: `torch.compile(dynamic=True)`; the first calls compile (tens of seconds on CPU, and again for
  batch 1), so it is for benchmarks, not for a service's start-up; never chosen by "auto".
- `"onnx"`: ONNX Runtime's CPUExecutionProvider over the graph of `poselift.export` (exported at load, a few
  seconds, or read from the export cache or a `poselift export --onnx` file); CPU only.
- `"auto"`: CUDA -> `"torch"`; CPU -> `"onnx"` when onnxruntime and onnxscript are installed (the serve
  extra), else `"torch"`.

Why "onnx" on CPU: it was the fastest backend at every batch size and thread count `python -m bench.model`
measured on CPU; the figures, the command that measures them and when they were taken are in
docs/performance.md and bench/RESULTS.md (`make bench`). On CUDA the eager module is kept: onnxruntime's CUDA
provider is not installed by default, and `make gpu-check` (bench/gpu_check.py) is what would compare them.

The ONNX Runtime session uses `threads` intra-op threads (default: `torch.get_num_threads()` at load, so one
thread setting, e.g. the service's `POSELIFT_TORCH_THREADS`, governs both), sequential execution, and all
graph optimisations.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from poselift.export import INPUT_NAMES, OUTPUT_NAME, WindowHeads, cached_export, example_inputs
from poselift.model import LiftingNetwork

BACKENDS = ("torch", "torchscript", "compile", "onnx")
AUTO = "auto"


class Runtime(Protocol):
    """A way to run a network: the heads of a batch of windows."""

    name: str

    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(N, W, 17, 2) float32 normalised keypoints, (N, W, 17) scores -> (N, 2, 18, 3) float32 heads.

        Raises:
            RuntimeError: input the network cannot take (e.g. another joint count), whatever the backend.
        """
        ...


def onnx_available() -> bool:
    """Whether the "onnx" backend can be built here (onnxruntime to run, onnxscript to export)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnxscript"))


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend for a requested one ("auto" or one of BACKENDS) on `device`.

    Raises:
        ValueError: an unknown backend, or "onnx" on a non-CPU device.
    """
    if backend == AUTO:
        return "onnx" if device.type == "cpu" and onnx_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected {AUTO!r} or one of {', '.join(BACKENDS)}")
    if backend == "onnx" and device.type != "cpu":
        raise ValueError(f"the onnx backend runs on CPU only (CPUExecutionProvider), not on {device}")
    return backend


def _device_of(model: LiftingNetwork) -> torch.device:
    return next(model.parameters()).device


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, torch.float32)


class TorchRuntime:
    """The module run eagerly, in eval mode (its training mode is restored afterwards)."""

    name = "torch"

    def __init__(self, model: LiftingNetwork) -> None:
        self.model = model
        self.heads = WindowHeads(model)

    @torch.inference_mode()
    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        try:
            device = _device_of(self.model)
            poses = self.heads(_tensor(windows_norm, device), _tensor(scores, device))
        finally:
            self.model.train(was_training)
        return poses.float().cpu().numpy()


class TorchScriptRuntime:
    """The module traced (`torch.jit.trace`, batch stays dynamic) and frozen: weights become constants."""

    name = "torchscript"

    def __init__(self, model: LiftingNetwork) -> None:
        self.device = _device_of(model)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript deprecation notice
            traced = torch.jit.trace(
                WindowHeads(model).eval(), example_inputs(model, device=self.device), check_trace=False
            )
            self.module = torch.jit.freeze(traced)

    @torch.inference_mode()
    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        poses = self.module(_tensor(windows_norm, self.device), _tensor(scores, self.device))
        return poses.float().cpu().numpy()


class CompiledRuntime:
    """`torch.compile(dynamic=True)` of the module; compiles on the first calls (tens of seconds on CPU)."""

    name = "compile"

    def __init__(self, model: LiftingNetwork) -> None:
        self.device = _device_of(model)
        self.module = torch.compile(WindowHeads(model).eval(), dynamic=True)

    @torch.inference_mode()
    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        poses = self.module(_tensor(windows_norm, self.device), _tensor(scores, self.device))
        return poses.float().cpu().numpy()


class OnnxRuntime:
    """An ONNX Runtime CPU session over a graph from `poselift.export.export_onnx` (bytes or a file)."""

    name = "onnx"

    def __init__(self, onnx_model: bytes | str | Path, threads: int | None = None) -> None:
        """Build the session.

        Args:
            onnx_model: the serialised model, or the path of a `.onnx` file.
            threads: intra-op threads; None: `torch.get_num_threads()`.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Pool threads sleep between runs instead of spinning: spinning kept a core ~85 % busy for a lone
        # 30 fps stream and, under load, took that core from the service's event loop (bench/RESULTS.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not isinstance(onnx_model, bytes) and not Path(onnx_model).is_file():
            raise FileNotFoundError(f"no ONNX file at {onnx_model}")
        source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own classes (InvalidArgument, InvalidGraph, ...)
            what = "the exported bytes" if isinstance(onnx_model, bytes) else str(onnx_model)
            raise ValueError(f"not a usable ONNX model ({what}): {error}") from error
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, windows_norm: np.ndarray, scores: np.ndarray) -> np.ndarray:
        feeds = {
            INPUT_NAMES[0]: np.ascontiguousarray(windows_norm, dtype=np.float32),
            INPUT_NAMES[1]: np.ascontiguousarray(scores, dtype=np.float32),
        }
        try:
            poses: Any = self.session.run([OUTPUT_NAME], feeds)[0]
        except Exception as error:  # onnxruntime's own classes; callers handle torch's RuntimeError
            raise RuntimeError(f"onnxruntime: {error}") from error
        return np.asarray(poses, dtype=np.float32)


def build_runtime(
    backend: str,
    model: LiftingNetwork,
    checkpoint_id: str = "unsaved",
    onnx_path: str | Path | None = None,
    threads: int | None = None,
) -> Runtime:
    """The runtime `backend` (one of BACKENDS, already resolved) for `model`, in eval mode.

    Args:
        backend: "torch", "torchscript", "compile" or "onnx".
        model: the network, on its device.
        checkpoint_id: the weights' id; an ONNX file must have been exported from exactly these weights.
        onnx_path: for "onnx": a file written by `poselift export --onnx`; None: export now (~3 s), or
            reuse this checkpoint's earlier export (`poselift.export.cached_export`).
        threads: for "onnx": intra-op threads (None: `torch.get_num_threads()`).

    Raises:
        ValueError: an unknown backend, or an ONNX file from other weights or another window.
    """
    if backend == "torch":
        return TorchRuntime(model)
    if backend == "torchscript":
        return TorchScriptRuntime(model)
    if backend == "compile":
        return CompiledRuntime(model)
    if backend != "onnx":
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if onnx_path is None:
        return OnnxRuntime(cached_export(model, checkpoint_id), threads)
    runtime = OnnxRuntime(onnx_path, threads)
    exported = (runtime.metadata.get("checkpoint_id"), runtime.metadata.get("window"))
    if exported != (checkpoint_id, str(model.config.window)):
        raise ValueError(
            f"{onnx_path} was exported from checkpoint {exported[0]} (window {exported[1]}), not from "
            f"{checkpoint_id} (window {model.config.window}); re-run `poselift export --onnx`"
        )
    return runtime


def max_abs_diff_mm(
    reference: Runtime, candidate: Runtime, windows_norm: np.ndarray, scores: np.ndarray
) -> float:
    """Largest absolute coordinate difference (mm) between two runtimes' poses of the same windows."""
    return float(np.abs(reference(windows_norm, scores) - candidate(windows_norm, scores)).max())
