"""The lifter on a CUDA device agrees with the CPU. Marked `cuda`: skipped without a CUDA device; run on a GPU
machine by `python -m bench.gpu_check` (or `pytest -m cuda`)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from poselift import load_lifter
from poselift.checkpoint import SHIPPED
from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
VAL = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"
# cuDNN may run float32 convolutions in TF32 (10-bit mantissa, ~1e-3 relative), and GPU reductions sum in
# another order: ~1 mm at most on poses of ~1 m; a wrong device placement or window is off by centimetres.
MAX_MM, MEAN_MM = 1.0, 0.1


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """(120, 17, 2) pixels: the first val segment through a 1280x720 camera 5 m away."""
    d = np.load(VAL)
    world = d["positions"][d["clip_starts"][0] : d["clip_starts"][0] + 120].astype(np.float64)
    aim = world[:, 0].mean(axis=0)
    cam_pos = aim + np.array([3500.0, 3500.0, 800.0])
    cam = world_to_camera(world, look_at_rotation(cam_pos, aim), cam_pos)
    return project_to_2d(cam, 1200.0, (640.0, 360.0))


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("backend", ["auto", "torchscript"])
def test_cuda_lift_matches_cpu(name: str, backend: str, clip: np.ndarray) -> None:
    gpu = load_lifter(name, "cuda", backend=backend)
    assert gpu.device.type == "cuda"
    assert next(gpu.model.parameters()).is_cuda
    on_gpu = gpu.lift(clip, width=1280, height=720, fps=30.0)
    on_cpu = load_lifter(name, "cpu", backend="torch").lift(clip, width=1280, height=720, fps=30.0)
    assert on_gpu.shape == on_cpu.shape == (len(clip), 17, 3)
    error = np.abs(on_gpu - on_cpu)
    assert error.max() < MAX_MM and error.mean() < MEAN_MM, (error.max(), error.mean())


def test_cuda_auto_backend_is_eager_torch() -> None:
    assert load_lifter(SHIPPED[0], "cuda").backend == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        load_lifter(SHIPPED[0], "cuda", backend="onnx")
