"""Self-describing checkpoints: safetensors weights + JSON metadata, loaded without unpickling code.

A checkpoint `NAME` is two files: `NAME.safetensors` (tensors, including the normalisation buffers, plus the
metadata JSON in the safetensors header) and `NAME.json` (the same metadata, for people). The metadata holds
the `LifterConfig`, the skeleton, the input normalisation, the training data and recipe, and validation
metrics; the loader rebuilds the model from it alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from poselift.model import LifterConfig, LiftingNetwork, build_model
from poselift.skeleton import H36M17_JOINTS, H36M17_PARENTS

FORMAT = "poselift-checkpoint/1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = ("tcn", "seq2seq", "framewise")
DEFAULT_MODEL = "tcn"  # what load_lifter() and the service load unless told otherwise
INPUT_NORMALISATION = (
    "pixels -> x/width*2 - [1, height/width] (poselift.geometry.normalize_screen_coordinates); "
    "then per window: centred on and scaled by the RMS spread of the visible joints (poselift.model)"
)


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def save_checkpoint(path: str | Path, model: LiftingNetwork, metadata: dict[str, Any]) -> Path:
    """Write `path`.safetensors and `path`.json; returns the .safetensors path.

    Args:
        path: destination without suffix (a suffix .safetensors/.json is stripped).
        model: the network; its config is recorded from `model.config`.
        metadata: anything JSON-serialisable to record (training recipe, data, metrics).
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "skeleton": {"joints": list(H36M17_JOINTS), "parents": list(H36M17_PARENTS)},
        "input_normalisation": INPUT_NORMALISATION,
        "output": "root-relative 3D joints in the camera frame (x right, y down, z forward), mm",
        **metadata,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = stem.with_suffix(".safetensors")
    tmp = weights_path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"poselift": json.dumps(meta)})
    tmp.chmod(0o644)  # readable by a service user other than the one who saved it (the image runs as one)
    tmp.replace(weights_path)  # atomic: a reader never sees half a checkpoint
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return weights_path


def resolve(name_or_path: str | Path) -> Path:
    """A shipped name (`SHIPPED`) or a path (with or without suffix) -> the .safetensors file."""
    if str(name_or_path) in SHIPPED:
        return WEIGHTS_DIR / f"{name_or_path}.safetensors"
    path = _stem(name_or_path).with_suffix(".safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (shipped names: {', '.join(SHIPPED)})")
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata JSON stored in a checkpoint's safetensors header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("poselift")
    if raw is None:
        raise ValueError(f"{path} is not a poselift checkpoint (no metadata)")
    meta: dict[str, Any] = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    return meta


def checkpoint_id(path: Path) -> str:
    """Content hash naming exactly these weights (first 12 hex digits of SHA-256)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_checkpoint(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[LiftingNetwork, dict[str, Any], Path]:
    """Rebuild the network of a checkpoint from the checkpoint alone, in eval mode.

    Returns:
        (model, metadata, the .safetensors path).
    """
    path = resolve(name_or_path)
    meta = read_metadata(path)
    model = build_model(LifterConfig(**meta["config"]))
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval(), meta, path
