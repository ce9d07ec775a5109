from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "mocap"
TRAIN, VAL = DATA / "cmu_h36m17_train.npz", DATA / "cmu_h36m17_val.npz"


@pytest.fixture(scope="session")
def small_val(tmp_path_factory) -> Path:
    """Two val segments as their own npz: enough for a quick validation or evaluation."""
    d = dict(np.load(VAL))
    keep = [0, 1]
    rows = np.concatenate(
        [np.arange(s, s + n) for s, n in zip(d["clip_starts"][keep], d["clip_lengths"][keep], strict=True)]
    )
    lengths = d["clip_lengths"][keep]
    out = {
        k: v[keep]
        for k, v in d.items()
        if v.ndim == 1 and len(v) == len(d["clip_starts"]) and k != "clip_starts"
    }
    out.update(
        positions=d["positions"][rows],
        clip_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        clip_lengths=lengths,
        fps=d["fps"],
        joint_names=d["joint_names"],
        parents=d["parents"],
    )
    path = tmp_path_factory.mktemp("data") / "small_val.npz"
    np.savez(path, **out)
    return path
