"""The poses file: JSON and npz hold the same thing; every malformed file is one clear PosesFileError."""

import json
from dataclasses import replace

import numpy as np
import pytest

from poselift.poses_file import PosesFileError, load_poses_file, poses_to_dict, save_poses_file
from tests.poselift.poseskit import mocap_poses


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip(tmp_path, suffix):
    clip = mocap_poses(segment=12, frames=30)
    path = tmp_path / f"clip{suffix}"
    save_poses_file(path, clip)
    back = load_poses_file(path)
    for key, value in poses_to_dict(clip).items():
        assert np.array_equal(np.asarray(getattr(back, key, value)), np.asarray(value)), key
    assert back.track_id == 1 and back.has_trajectory and back.num_frames == 30


def test_json_is_strict_and_missing_values_come_back_as_nan(tmp_path):
    """Browsers' JSON.parse rejects NaN: unseen joints' keypoints and an unknown focal length are null."""
    clip = mocap_poses(segment=12, frames=4)
    keypoints = clip.keypoints_px.copy()
    keypoints[1, 3] = np.nan
    path = tmp_path / "clip.json"
    save_poses_file(path, replace(clip, keypoints_px=keypoints, focal_px=float("nan")))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    back = load_poses_file(path)
    assert np.isnan(back.keypoints_px[1, 3]).all() and np.isnan(back.focal_px)
    assert np.array_equal(np.isnan(back.keypoints_px), np.isnan(keypoints))


def test_optional_keys_default(tmp_path):
    clip = mocap_poses(segment=12, frames=5)
    data = {
        k: v
        for k, v in poses_to_dict(clip).items()
        if k in ("fps", "width", "height", "keypoints_px", "poses_mm")
    }
    path = tmp_path / "min.json"
    path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in data.items()}))
    poses = load_poses_file(path)
    assert np.all(poses.scores == 1) and np.all(poses.visible == 1) and not poses.has_trajectory
    assert poses.frame_index is None and poses.track_id is None


def _write(tmp_path, **changes):
    data = {k: np.asarray(v).tolist() for k, v in poses_to_dict(mocap_poses(segment=12, frames=5)).items()}
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"poses_mm": None}, "missing key 'poses_mm'"),
        ({"fps": None}, "missing key 'fps'"),
        ({"scores": np.ones((4, 17)).tolist()}, "'scores' has shape (4, 17), expected (5, 17)"),
        ({"keypoints_px": np.ones((5, 16, 2)).tolist()}, "'keypoints_px' has shape (5, 16, 2)"),
        ({"poses_mm": [[[1e999, 0, 0]] * 17] * 5}, "'poses_mm' holds non-finite values"),
        ({"joints": ["a"] * 17}, "'joints' must be the 17 h36m17 names"),
        ({"fps": 0}, "fps, width and height must be positive"),
        ({"fps": [1, 2]}, "'fps' must be one number"),
        ({"poses_mm": "text"}, "'poses_mm' is not numeric"),
        ({"poses_mm": []}, "'poses_mm' has shape (0,)"),
    ],
)
def test_malformed_files(tmp_path, changes, message):
    with pytest.raises(PosesFileError) as error:
        load_poses_file(_write(tmp_path, **changes))
    assert message in str(error.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(PosesFileError, match="no such file"):
        load_poses_file(tmp_path / "none.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(PosesFileError, match=r"expected \.json or \.npz"):
        load_poses_file(tmp_path / "x.csv")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(PosesFileError, match="not a readable npz file"):
        load_poses_file(tmp_path / "x.npz")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PosesFileError, match="expected a JSON object"):
        load_poses_file(tmp_path / "list.json")
    with pytest.raises(PosesFileError, match=r"expected \.json or \.npz"):
        save_poses_file(tmp_path / "x.txt", mocap_poses(segment=12, frames=2))
