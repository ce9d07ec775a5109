"""Where the trainer finds the CMU splits: POSELIFT_DATA_DIR, else the source checkout's data/."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.mocap import CHECKOUT_DATA_DIR, DATA_DIR_ENV, Mocap, split_path

ROOT = Path(__file__).resolve().parents[2]


def test_mocap_splits_default_to_the_checkout(monkeypatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert CHECKOUT_DATA_DIR == ROOT / "data"
    train, val = Mocap.load(split_path("train")), Mocap.load(split_path("val"))
    assert (len(train), len(val)) == (106, 17)  # data/mocap/README.md
    assert not set(train.subject) & set(val.subject)  # split by subject


def test_mocap_splits_follow_the_setting(monkeypatch, tmp_path) -> None:
    (tmp_path / "mocap").mkdir()
    np.savez(tmp_path / "mocap" / "cmu_h36m17_val.npz", fps=np.float32(30))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert split_path("val") == tmp_path / "mocap" / "cmu_h36m17_val.npz"
    with pytest.raises(FileNotFoundError, match=r"mocap/cmu_h36m17_train\.npz"):
        split_path("train")


@pytest.mark.slow  # two commands in fresh processes
def test_mocap_missing_folder_is_a_clear_command_error(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    env = {**os.environ, DATA_DIR_ENV: str(missing)}
    for command in (["train", "--steps", "1"], ["evaluate", "--checkpoint", "framewise"]):
        res = subprocess.run(
            [sys.executable, "-m", "poselift.cli", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        assert f"{DATA_DIR_ENV}={missing} does not exist" in res.stderr
        assert "Traceback" not in res.stderr
