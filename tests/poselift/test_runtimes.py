"""Runtime backends: TorchScript and ONNX Runtime give eager torch's poses on real validation windows."""

from pathlib import Path

import numpy as np
import pytest
import torch

from poselift import load_lifter
from poselift.export import TOLERANCE_MM
from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera
from poselift.inputs import prepare_keypoints
from poselift.runtimes import BACKENDS, OnnxRuntime, onnx_available, resolve_backend
from poselift.windows import causal_windows

VAL = Path(__file__).resolve().parents[2] / "data" / "mocap" / "cmu_h36m17_val.npz"

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnxscript not installed")


def val_windows(window: int, frames: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Causal windows of the first `frames` val frames seen by a 1280x720 camera 5 m away, with 5 px noise
    and 10 % of the joints missing: (frames, W, 17, 2) normalised keypoints and (frames, W, 17) scores."""
    d = np.load(VAL)
    world = d["positions"][:frames].astype(np.float64)
    aim = world[:, 0].mean(axis=0)
    cam_pos = aim + np.array([3500.0, 3500.0, 800.0])
    cam = world_to_camera(world, look_at_rotation(cam_pos, aim), cam_pos)
    rng = np.random.default_rng(0)
    keypoints_px = project_to_2d(cam, 1200.0, (640.0, 360.0)) + rng.normal(0.0, 5.0, (frames, 17, 2))
    scores = np.where(rng.random((frames, 17)) < 0.1, 0.0, 1.0)
    kp_norm, sc = prepare_keypoints(keypoints_px, 1280, 720, scores, "h36m17")
    return causal_windows(kp_norm, window), causal_windows(sc, window)


@pytest.fixture(scope="module")
def eager():
    return load_lifter("seq2seq", "cpu", backend="torch")


@pytest.fixture(scope="module")
def windows(eager):
    return val_windows(eager.window)


@pytest.fixture(scope="module")
def expected(eager, windows):
    return eager.lift_windows(*windows)  # (300, 17, 3) mm


@pytest.fixture(scope="module", params=[pytest.param("onnx", marks=needs_onnx), "torchscript"])
def compiled(request):
    return load_lifter("seq2seq", "cpu", backend=request.param)


@pytest.mark.parametrize("batch", [1, 37, 300])
def test_backend_matches_eager_torch_on_val_windows(compiled, windows, expected, batch):
    kp, sc = windows
    starts = range(0, len(kp), batch) if batch > 1 else range(0, len(kp), 25)  # batch 1: every 25th
    got = np.concatenate([compiled.lift_windows(kp[s : s + batch], sc[s : s + batch]) for s in starts])
    want = expected if batch > 1 else expected[::25]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE_MM, err_msg=compiled.backend)


def test_backend_keeps_the_lifter_interface(compiled, eager):
    assert compiled.backend in BACKENDS
    assert compiled.model is not eager.model and compiled.model.config == eager.model.config
    assert (compiled.window, compiled.device.type) == (5, "cpu")
    assert compiled.checkpoint_id == eager.checkpoint_id and compiled.metadata == eager.metadata


@needs_onnx
def test_auto_backend_is_onnx_on_cpu_and_torch_on_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "onnx"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=r"unknown backend 'bogus'.*torch, torchscript, compile, onnx"):
        load_lifter("seq2seq", "cpu", backend="bogus")


def test_onnx_backend_is_cpu_only():
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("onnx", torch.device("cuda"))


def test_onnx_path_needs_the_onnx_backend(tmp_path):
    with pytest.raises(ValueError, match="onnx_path is for the onnx backend"):
        load_lifter("seq2seq", "cpu", backend="torch", onnx_path=tmp_path / "x.onnx")


@needs_onnx
def test_onnx_session_follows_the_thread_setting():
    default = load_lifter("seq2seq", "cpu", backend="onnx")  # exported once per session (conftest's cache)
    explicit = load_lifter("seq2seq", "cpu", backend="onnx", threads=2)
    assert isinstance(default.runtime, OnnxRuntime) and isinstance(explicit.runtime, OnnxRuntime)
    threads = [
        lifter.runtime.session.get_session_options().intra_op_num_threads for lifter in (default, explicit)
    ]
    assert threads == [torch.get_num_threads(), 2]


def test_malformed_windows_raise_runtime_error_on_every_backend(compiled):
    with pytest.raises(RuntimeError):  # 3 joints: what torch raises, so callers handle one error type
        compiled.lift_windows(np.zeros((1, 5, 3, 2), np.float32), np.ones((1, 5, 3), np.float32))
