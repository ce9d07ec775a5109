import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from poselift.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from poselift.lifter import load_lifter
from poselift.model import LifterConfig, build_model


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    model = build_model(LifterConfig(hidden_size=24, window=4, dropout=0.0)).eval()
    model.scaler.set_statistics(torch.arange(48.0), torch.full((48,), 50.0))
    path = save_checkpoint(tmp_path / "ck", model, {"validation": {"P1_clean": 12.5}})
    assert path.suffix == ".safetensors" and (tmp_path / "ck.json").exists()
    loaded, meta, _ = load_checkpoint(tmp_path / "ck")
    assert loaded.config == model.config
    assert meta["validation"]["P1_clean"] == 12.5
    assert json.loads((tmp_path / "ck.json").read_text())["config"]["window"] == 4
    kp, sc = torch.rand(2, 4, 17, 2), torch.ones(2, 4, 17)
    assert torch.equal(loaded(kp, sc), model(kp, sc))
    # The normalisation statistics travel inside the weights file; nothing is pickled.
    assert torch.equal(load_file(str(path))["scaler.out_mean_mm"], torch.arange(48.0))


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a poselift checkpoint"):
        read_metadata(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("name", ["tcn", "seq2seq", "framewise"])
def test_shipped_checkpoints_describe_themselves(name):
    lifter = load_lifter(name, "cpu")
    meta = lifter.metadata
    assert meta["config"]["kind"] == name
    assert meta["training_data"]["file"] == "cmu_h36m17_train.npz"
    assert "09" not in meta["training_data"]["subjects"]  # validation subjects never trained on
    assert meta["validation"]["P1_clean"] > 0
    assert len(lifter.checkpoint_id) == 12
    assert np.isfinite(lifter.lift(np.random.default_rng(0).uniform(0, 500, (6, 17, 2)), 640, 480)).all()
