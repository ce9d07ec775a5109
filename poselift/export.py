"""ONNX export of a lifting network: the graph that the "onnx" backend (`poselift.runtimes`) runs.

The exported graph is the network's per-window outputs (`WindowHeads`), i.e. what serving computes:

    keypoints_norm (N, W, 17, 2) float32, scores (N, W, 17) float32 -> heads (N, 2, 18, 3) float32

heads[:, 0] is the newest frame, heads[:, 1] the window's centre frame (the offline output; the same as the
newest for models without a centre head); in each, rows 0-16 are the root-relative pose (mm) and row 17 the
root code (`poselift.geometry.root_from_code`; zeros for models without a root head).

N (windows) is a dynamic axis; W is fixed by the checkpoint's config (the LSTM loops are unrolled W times).
The model's `metadata_props` record which checkpoint it was exported from (`checkpoint_id`), so a file
written by `poselift export --onnx` is never run with other weights.

`cached_export` keeps exports of saved checkpoints in `$POSELIFT_CACHE_DIR` (default
`~/.cache/poselift`), keyed by the checkpoint's content hash, the source of this module and of
`poselift.model`, and the torch version, so only the first load of a checkpoint pays for the export and a
changed model or exporter never reuses a stale graph. An unwritable cache only costs the export.

Export uses PyTorch's dynamo-based exporter (`torch.onnx.export(..., dynamo=True)`, which needs `onnxscript`;
the serve extra installs it): about 3 s on one core for the shipped seq2seq. The legacy TorchScript-based
exporter bakes the example batch size into the LSTM's zero state, so its graph fails on any other batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from poselift import model as model_module
from poselift.model import LiftingNetwork, TemporalConvLifter
from poselift.skeleton import NUM_JOINTS, flip_permutation

INPUT_NAMES = ("keypoints_norm", "scores")
OUTPUT_NAME = "heads"
EXPORT_FORMAT = "poselift-onnx/2"  # bump when the graph's inputs, outputs or meaning change
# ONNX Runtime vs eager torch, largest coordinate difference allowed (mm). float32 poses reach ~1 m, where
# one ulp is 6e-5 mm; measured differences (fused kernels, other summation orders) are up to ~7e-4 mm.
TOLERANCE_MM = 1e-3


class WindowHeads(nn.Module):
    """A network's per-window outputs in one tensor: (N, W, J, 2), (N, W, J) -> (N, 2, J + 1, 3).

    [:, 0] newest frame, [:, 1] centre frame; rows :J the root-relative pose (mm), row J the root code.
    With the config's `test_time_flip`, each output is the mean of the window's and its mirror image's: the
    mirrored window (x negated in screen-normalised units, i.e. reflected about the image's vertical centre
    line, and left/right joints swapped) goes through the network in the same batch, and its outputs are
    mirrored back (x of every row negated, the root code's u included, and the joints swapped again).
    """

    swap_joints: torch.Tensor  # (J,) each joint's mirror twin
    swap_rows: torch.Tensor  # (J + 1,) the same over the output rows, the root code's row kept last
    negate_x: torch.Tensor  # (3,) [-1, 1, 1]

    def __init__(self, model: LiftingNetwork) -> None:
        super().__init__()
        self.model = model
        self.flip = bool(model.config.test_time_flip)
        device = next(model.parameters()).device  # made where the model is, so `.to` below is a no-op
        perm = torch.as_tensor(flip_permutation(), dtype=torch.long, device=device)
        rows = torch.cat([perm, torch.tensor([NUM_JOINTS], device=device)])
        self.register_buffer("swap_joints", perm, persistent=False)
        self.register_buffer("swap_rows", rows, persistent=False)
        self.register_buffer("negate_x", torch.tensor([-1.0, 1.0, 1.0], device=device), persistent=False)

    def forward(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.flip:
            return self._heads(keypoints_norm, scores)
        # The constants follow the input: the model may have moved since (no copy when it has not).
        device = keypoints_norm.device
        swap_joints, swap_rows = self.swap_joints.to(device), self.swap_rows.to(device)
        negate_x = self.negate_x.to(device=device, dtype=keypoints_norm.dtype)
        n = keypoints_norm.shape[0]
        mirrored = keypoints_norm[:, :, swap_joints] * negate_x[:2]
        heads = self._heads(
            torch.cat([keypoints_norm, mirrored]), torch.cat([scores, scores[:, :, swap_joints]])
        )
        return 0.5 * (heads[:n] + heads[n:][:, :, swap_rows] * negate_x.to(heads.dtype))

    def _heads(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, TemporalConvLifter):
            newest, centre, root_newest, root_centre = self.model.forward_heads(keypoints_norm, scores)
        else:  # no centre or root head: the newest pose stands for both, the root code is zero
            newest = self.model(keypoints_norm, scores)[:, -1]
            centre, root_newest = newest, newest.new_zeros(newest.shape[0], 3)
            root_centre = root_newest
        rows = [
            torch.cat([pose, root[:, None]], dim=1)
            for pose, root in ((newest, root_newest), (centre, root_centre))
        ]
        return torch.stack(rows, dim=1)


def random_windows(count: int, window: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random causal windows to compare runtimes on, shaped like serving's input.

    Returns:
        (count, window, 17, 2) float32 normalised keypoints uniform in [-0.5, 0.5], and (count, window, 17)
        float32 scores uniform in [0.3, 1] with 10 % of the joints missing (score 0).
    """
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(-0.5, 0.5, (count, window, NUM_JOINTS, 2)).astype(np.float32)
    scores = rng.uniform(0.3, 1.0, (count, window, NUM_JOINTS)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] = 0.0
    return keypoints, scores


def example_inputs(
    model: LiftingNetwork, batch: int = 2, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, W, 17, 2) keypoints and (batch, W, 17) scores from `random_windows`, to trace a model."""
    keypoints, scores = random_windows(batch, model.config.window)
    return torch.from_numpy(keypoints).to(device), torch.from_numpy(scores).to(device)


def export_onnx(
    model: LiftingNetwork, checkpoint_id: str = "unsaved", path: str | Path | None = None
) -> bytes:
    """Export `model` (its per-window outputs, see `WindowHeads`) to ONNX, on CPU, in eval mode.

    Args:
        model: the network; it is not modified (a CPU copy is exported).
        checkpoint_id: recorded in the model's metadata (`Lifter.checkpoint_id`).
        path: also write the model there, when given.

    Returns:
        The serialised ONNX model (inputs `keypoints_norm` (N, W, J, 2) and `scores` (N, W, J), output
        `heads` (N, 2, J + 1, 3), N dynamic).
    """
    import copy

    cpu_model = copy.deepcopy(model).cpu().eval()
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), _quiet_exporter_logs(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer chatter, none of it actionable here
        program = torch.onnx.export(
            WindowHeads(cpu_model),
            example_inputs(cpu_model),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch}, {0: batch}),
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    metadata = {
        "format": EXPORT_FORMAT,
        "checkpoint_id": checkpoint_id,
        "kind": model.config.kind,
        "window": str(model.config.window),
        "torch": torch.__version__,
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = proto.SerializeToString()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def cache_dir() -> Path:
    """Where `cached_export` keeps exported graphs: `$POSELIFT_CACHE_DIR`, else `~/.cache/poselift`."""
    configured = os.environ.get("POSELIFT_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "poselift"


def _cache_key(checkpoint_id: str) -> str:
    digest = hashlib.sha256(checkpoint_id.encode())
    for source in (Path(__file__), Path(model_module.__file__ or "")):
        digest.update(source.read_bytes())
    digest.update(torch.__version__.encode())
    return f"{checkpoint_id}-{digest.hexdigest()[:16]}"


def cached_export(model: LiftingNetwork, checkpoint_id: str) -> bytes:
    """`export_onnx(model, checkpoint_id)`, memoised on disk for saved checkpoints (see the module doc).

    Args:
        model: the network of checkpoint `checkpoint_id` ("unsaved": exported every time, never cached).
        checkpoint_id: `Lifter.checkpoint_id`, the content hash of the weights file.
    """
    if checkpoint_id == "unsaved":
        return export_onnx(model, checkpoint_id)
    path = cache_dir() / "onnx" / f"{_cache_key(checkpoint_id)}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = export_onnx(model, checkpoint_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a concurrent loader reads the whole file or none
    except OSError:
        pass
    return data


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Raise the exporter's loggers to ERROR (it warns, e.g., that torchvision's ops are not registered)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
