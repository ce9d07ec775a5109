"""BVH export: read back by an independent reader (pybvh, from PyPI), whose forward kinematics must give back
the poses; the twist rules, Euler angles and the command line."""

from dataclasses import replace

import numpy as np
import pybvh
import pytest
from scipy.spatial.transform import Rotation

from poselift import load_lifter
from poselift.bvh import (
    NODES,
    UNITS_PER_MM,
    bone_lengths_mm,
    bvh_text,
    camera_to_yup,
    euler_zxy_to_matrix,
    global_rotations,
    local_rotations,
    matrix_to_euler_zxy,
    rest_length_poses,
    write_bvh,
    yup_to_camera,
)
from poselift.cli import main
from poselift.poses_file import save_poses_file
from poselift.skeleton import H36M17_JOINTS
from tests.poselift.poseskit import mocap_poses, val_segments

# Forward kinematics of the written file against the poses with each bone at its rest (median) length. The
# file keeps 6 decimals (1e-5 mm in cm, 1e-3 mm in m; angles to 1e-6 degrees): 0.01 mm leaves room for all
# units.
TOLERANCE_MM = 0.01


def read_back_mm(path) -> np.ndarray:
    """(T, 17, 3) camera-frame joint positions (file units) from pybvh's parse and forward kinematics."""
    bvh = pybvh.read_bvh_file(path)
    positions = bvh.node_positions()  # (T, nodes, 3) in the file's units and Y-up frame
    # Each h36m17 joint is the BVH joint of its name, or the End Site below the joint whose bone ends there.
    end_site_of = {node.child: node.name for node in NODES if node.end_site}
    rows = []
    for j, name in enumerate(H36M17_JOINTS):
        if name in bvh.node_index:
            rows.append(bvh.node_index[name])
        else:
            (site,) = [
                i for i, n in enumerate(bvh.nodes) if n.is_end_site() and n.parent.name == end_site_of[j]
            ]
            rows.append(site)
    return yup_to_camera(positions[:, rows])


@pytest.mark.parametrize("units", ["cm", "mm", "m"])
def test_round_trip_through_pybvh_gives_the_poses_back(tmp_path, units):
    clip = mocap_poses(segment=12)
    path = tmp_path / "clip.bvh"
    write_bvh(path, clip.poses_mm, clip.fps, clip.trajectory_mm, units)
    got = read_back_mm(path) / UNITS_PER_MM[units]
    expected = rest_length_poses(clip.poses_mm) + clip.trajectory_mm[:, None]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE_MM
    # Against the raw poses the only difference is fixing each bone to its median length.
    raw = clip.poses_mm + clip.trajectory_mm[:, None]
    rescale = np.linalg.norm(expected - raw, axis=-1).max()
    assert np.linalg.norm(got - raw, axis=-1).max() == pytest.approx(rescale, abs=TOLERANCE_MM)
    assert rescale < 25.0  # mocap bones are near-rigid (interpolated spine and neck vary by a few mm)


def test_round_trip_of_a_lifters_output(tmp_path):
    """Lifted poses have bones that stretch from frame to frame; the directions still come back exactly."""
    clip = mocap_poses(segment=10, frames=90)
    lifter = load_lifter("seq2seq", backend="torch")
    lifted = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps).astype(np.float64)
    path = tmp_path / "lifted.bvh"
    write_bvh(path, lifted, clip.fps, clip.trajectory_mm)
    got = read_back_mm(path) / UNITS_PER_MM["cm"]
    expected = rest_length_poses(lifted) + clip.trajectory_mm[:, None]
    assert np.abs(got - expected).max() <= TOLERANCE_MM


def test_header_frames_fps_offsets_and_channels():
    clip = mocap_poses(segment=11, frames=40, fps=25.0)
    text = bvh_text(clip.poses_mm, clip.fps, clip.trajectory_mm, units="mm")
    lines = text.splitlines()
    assert lines[0] == "HIERARCHY" and lines[1] == "ROOT pelvis"
    assert "Frames: 40" in lines and "Frame Time: 0.04000000" in lines
    assert text.count("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation") == 1
    assert text.count("CHANNELS 3 Zrotation Xrotation Yrotation") == len(NODES) - 1
    assert text.count("End Site") == 5  # two wrists, two ankles, the head top
    # The rest skeleton is the T-pose with the clip's median bone lengths: thigh straight down, in mm.
    thigh = bone_lengths_mm(clip.poses_mm)[H36M17_JOINTS.index("right_knee")]
    knee = next(i for i, line in enumerate(lines) if line.strip() == "JOINT right_knee")
    assert lines[knee + 2].strip() == f"OFFSET 0.000000 {-thigh:.6f} 0.000000"
    # One motion line per frame, root position first: the pelvis trajectory in the Y-up frame.
    motion = np.array([[float(v) for v in line.split()] for line in lines[lines.index("MOTION") + 3 :]])
    assert motion.shape == (40, 6 + 3 * (len(NODES) - 1))
    assert np.allclose(motion[:, :3], camera_to_yup(clip.trajectory_mm), atol=1e-5)


def test_without_a_trajectory_the_root_stays_at_the_origin(tmp_path):
    clip = mocap_poses(segment=0, frames=20)
    path = tmp_path / "still.bvh"
    write_bvh(path, clip.poses_mm, clip.fps, np.zeros((20, 3)))
    got = read_back_mm(path) / UNITS_PER_MM["cm"]
    assert np.abs(got[:, 0]).max() <= TOLERANCE_MM
    assert np.abs(got - rest_length_poses(clip.poses_mm)).max() <= TOLERANCE_MM


def test_twist_rules():
    """The pelvis's x axis follows the hip line; knees and elbows turn (almost) only about their hinge."""
    clip = mocap_poses(segment=11)
    poses = camera_to_yup(clip.poses_mm)
    rot = global_rotations(poses)  # (T, nodes, 3, 3)
    spine = poses[:, 7] / np.linalg.norm(poses[:, 7], axis=-1, keepdims=True)
    assert np.allclose(rot[:, 0, :, 1], spine, atol=1e-9)  # the pelvis's y axis: its bone, to the spine
    hip_line = poses[:, 4] - poses[:, 1]
    hip_line -= np.sum(hip_line * spine, axis=-1, keepdims=True) * spine
    hip_line /= np.linalg.norm(hip_line, axis=-1, keepdims=True)
    assert np.allclose(rot[:, 0, :, 0], hip_line, atol=1e-9)  # its x axis: the hip line, square to the spine
    local = local_rotations(rot)
    # The rest hinge axes: x for knees (bent backward), -y / +y for the left / right elbow (bent forward).
    for name, hinge in (
        ("right_knee", [1.0, 0, 0]),
        ("left_knee", [1.0, 0, 0]),
        ("left_elbow", [0, -1.0, 0]),
    ):
        rotvec = Rotation.from_matrix(local[:, [n.name for n in NODES].index(name)]).as_rotvec()  # (T, 3)
        bent = np.linalg.norm(rotvec, axis=-1) > np.radians(20)
        assert bent.sum() > 5
        cosine = np.abs(rotvec[bent] @ np.array(hinge)) / np.linalg.norm(rotvec[bent], axis=-1)
        assert np.degrees(np.arccos(cosine.min())) < 15.0


def test_no_twist_flips_over_the_whole_val_split():
    """Frame to frame no joint turns by more than 45° at 30 fps (the largest seen is 26°; a flip is ~180°)."""
    worst = 0.0
    for world in val_segments():
        pose = world - world[:, :1]
        local = local_rotations(global_rotations(pose[..., [0, 2, 1]] * [1, 1, -1]))  # any Y-up view will do
        step = np.swapaxes(local[:-1], -1, -2) @ local[1:]
        cos = (np.trace(step, axis1=-2, axis2=-1) - 1) / 2
        worst = max(worst, float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()))
    assert worst < 45.0


def test_euler_zxy_matches_scipy_and_round_trips():
    rng = np.random.default_rng(0)
    mats = Rotation.random(500, random_state=1).as_matrix()
    angles = matrix_to_euler_zxy(mats)
    assert np.allclose(euler_zxy_to_matrix(angles), mats, atol=1e-12)
    assert np.allclose(Rotation.from_euler("ZXY", angles).as_matrix(), mats, atol=1e-12)  # R = Rz Rx Ry
    # Gimbal lock (x = ±90°): the angles are not unique, the rotation still is.
    locked = Rotation.from_euler(
        "ZXY", np.c_[rng.uniform(-3, 3, 20), np.full(20, np.pi / 2), rng.uniform(-3, 3, 20)]
    )
    assert np.allclose(
        euler_zxy_to_matrix(matrix_to_euler_zxy(locked.as_matrix())), locked.as_matrix(), atol=1e-9
    )


def test_bad_arrays_are_value_errors():
    clip = mocap_poses(segment=0, frames=10)
    with pytest.raises(ValueError, match="shape"):
        bvh_text(clip.poses_mm[:, :16], 30.0)
    nan = clip.poses_mm.copy()
    nan[3, 5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        bvh_text(nan, 30.0)
    with pytest.raises(ValueError, match="fps"):
        bvh_text(clip.poses_mm, 0.0)
    with pytest.raises(ValueError, match="trajectory"):
        bvh_text(clip.poses_mm, 30.0, np.zeros((9, 3)))
    with pytest.raises(ValueError, match="units"):
        bvh_text(clip.poses_mm, 30.0, units="inch")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_cli_export_bvh(tmp_path, capsys, suffix):
    clip = mocap_poses(segment=14, frames=50)
    poses_path = tmp_path / f"clip{suffix}"
    save_poses_file(poses_path, clip)
    out = tmp_path / "clip.bvh"
    assert main(["export-bvh", str(poses_path), str(out), "--units", "m"]) == 0
    assert "50 frames at 30 fps" in capsys.readouterr().out
    got = read_back_mm(out) / UNITS_PER_MM["m"]
    expected = rest_length_poses(clip.poses_mm) + clip.trajectory_mm[:, None]
    assert np.abs(got - expected).max() <= TOLERANCE_MM


def test_cli_export_bvh_bad_input_is_exit_2(tmp_path, capsys):
    out = str(tmp_path / "x.bvh")
    assert main(["export-bvh", str(tmp_path / "missing.npz"), out]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    clip = mocap_poses(segment=0, frames=10)
    save_poses_file(bad, replace(clip, poses_mm=clip.poses_mm[:, :, :2]))
    assert main(["export-bvh", str(bad), out]) == 2
    err = capsys.readouterr().err
    assert "'poses_mm' has shape (10, 17, 2), expected (T, 17, 3)" in err and "Traceback" not in err
    (tmp_path / "text.json").write_text("not json")
    assert main(["export-bvh", str(tmp_path / "text.json"), out]) == 2
    assert "not a readable JSON file" in capsys.readouterr().err
    good = tmp_path / "good.npz"
    save_poses_file(good, clip)
    assert main(["export-bvh", str(good), str(tmp_path / "no-such-dir" / "x.bvh")]) == 2
    assert "cannot write" in capsys.readouterr().err
