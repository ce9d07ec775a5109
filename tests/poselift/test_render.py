"""`poselift render`: real clips drawn to real mp4/gif files (imageio-ffmpeg's ffmpeg, Pillow), read back."""

from dataclasses import replace

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from poselift.cli import main
from poselift.poses_file import save_poses_file
from poselift.render import CAMERA_UP, RenderError, floor_height_mm, render, scene_points, up_direction
from tests.poselift.poseskit import mocap_poses

FRAMES = 20


@pytest.fixture(scope="module")
def clip():
    """20 frames of a walk (val take 10_04) with its trajectory."""
    return mocap_poses(segment=14, frames=FRAMES)


def coloured(picture: np.ndarray) -> np.ndarray:
    """Mask of clearly coloured pixels (the red and blue limbs), (H, W)."""
    p = picture.astype(int)
    return (p.max(axis=-1) - p.min(axis=-1)) > 80


def assert_skeletons_drawn(frames: np.ndarray) -> None:
    """Limbs drawn in both panels of every frame, and the pictures change as the person moves."""
    width = frames.shape[2]
    for picture in frames:
        assert coloured(picture[:, : width // 2]).sum() > 50  # the 2D panel
        assert coloured(picture[:, width // 2 :]).sum() > 50  # the 3D panel
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 100


def test_render_mp4(tmp_path, clip):
    out = tmp_path / "clip.mp4"
    assert render(clip, out) == FRAMES
    frames = iio.imread(out, index=None, plugin="FFMPEG")
    assert frames.shape == (FRAMES, 640, 1280, 3)
    assert imageio.get_reader(out, format="FFMPEG").get_meta_data()["fps"] == pytest.approx(30.0)
    assert_skeletons_drawn(frames)


def test_render_gif_without_trajectory(tmp_path, clip):
    """Root-relative poses (trajectory unknown) render too; the gif is half the mp4's size by default."""
    out = tmp_path / "clip.gif"
    still = replace(clip, trajectory_mm=np.zeros_like(clip.trajectory_mm))
    assert render(still, out) == FRAMES
    frames = iio.imread(out, index=None)
    assert frames.shape[:3] == (FRAMES, 320, 640)
    assert_skeletons_drawn(frames[..., :3])


def test_scene_is_levelled_by_the_torso():
    """The test camera looks down 9°, which tilts the floor in its frame; levelled by the median torso, the
    lowest ankle of each frame of a 4.5 s walk stays within 10 cm of one height (43 cm apart unlevelled)."""
    walk = mocap_poses(segment=14)
    tilt = np.degrees(np.arccos(up_direction(walk.poses_mm) @ CAMERA_UP))
    assert 3.0 < tilt < 15.0
    lowest = scene_points(walk)[:, [3, 6], 2].min(axis=1)
    assert np.ptp(lowest) < 100.0
    camera_frame = walk.poses_mm - walk.poses_mm[:, :1] + walk.trajectory_mm[:, None]
    unlevelled = (-camera_frame[:, [3, 6], 1]).min(axis=1)  # height along the camera's up (-y)
    assert np.ptp(unlevelled) > 300.0


def test_floor_is_the_lowest_ankle(clip):
    points = scene_points(clip)  # x right, y depth, z up
    assert floor_height_mm(points) == pytest.approx(points[:, [3, 6], 2].min())
    # Up is the camera's up: the head is above the pelvis, the pelvis above the floor.
    assert np.all(points[:, 10, 2] > points[:, 0, 2]) and np.all(points[:, 0, 2] > floor_height_mm(points))


def test_render_over_the_video_frames_that_frame_index_names(tmp_path, clip):
    """Each row is drawn over the video frame `frame_index` names: the video's frame k is a flat grey of
    20 + 5k, so the commonest grey of the 2D panel tells which frame is under it (an off-by-one shows)."""
    video = tmp_path / "in.mp4"
    with imageio.get_writer(
        video, format="FFMPEG", fps=30, codec="libx264", quality=9, macro_block_size=16
    ) as w:
        for k in range(2 * FRAMES + 2):
            w.append_data(np.full((176, 320, 3), 20 + 5 * k, dtype=np.uint8))
    rows = replace(clip, frame_index=2 * np.arange(FRAMES) + 1)  # every second frame, from frame 1
    out = tmp_path / "over.mp4"
    poses = str(_poses_file(tmp_path, rows))
    assert main(["render", poses, str(out), "--video", str(video), "--width", "640"]) == 0
    frames = iio.imread(out, index=None, plugin="FFMPEG")
    assert frames.shape[0] == FRAMES
    for row, picture in enumerate(frames):
        left = picture[:, : picture.shape[1] // 2].astype(int)
        grey = (left.max(axis=-1) - left.min(axis=-1) <= 3) & (left.mean(axis=-1) < 240)
        commonest = np.bincount(left[grey].mean(axis=-1).round().astype(int)).argmax()
        assert abs(commonest - (20 + 5 * (2 * row + 1))) <= 2, row
    assert_skeletons_drawn(frames)


def _poses_file(tmp_path, poses, name="clip.npz"):
    path = tmp_path / name
    save_poses_file(path, poses)
    return path


def test_bad_input_is_a_clear_error(tmp_path, clip, capsys):
    with pytest.raises(RenderError, match=r"unknown output type '\.avi'"):
        render(clip, tmp_path / "clip.avi")
    poses = str(_poses_file(tmp_path, clip))
    assert main(["render", poses, str(tmp_path / "clip.webm")]) == 2
    assert "expected .mp4 or .gif" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "none.json"), str(tmp_path / "x.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["render", poses, str(tmp_path / "x.mp4"), "--video", str(tmp_path / "none.mp4")]) == 2
    assert "no such video file" in capsys.readouterr().err
    not_video = tmp_path / "not-video.mp4"
    not_video.write_bytes(b"this is no video")
    assert main(["render", poses, str(tmp_path / "x.mp4"), "--video", str(not_video)]) == 2
    assert "cannot read the video" in capsys.readouterr().err
    assert main(["render", poses, str(tmp_path / "missing-dir" / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


def test_a_video_shorter_than_the_poses_is_a_clear_error(tmp_path, clip, capsys):
    video = tmp_path / "short.mp4"
    with imageio.get_writer(video, format="FFMPEG", fps=30, macro_block_size=16) as w:
        for _ in range(5):
            w.append_data(np.zeros((64, 64, 3), dtype=np.uint8))
    eight = {key: getattr(clip, key)[:8] for key in ("poses_mm", "keypoints_px", "scores", "trajectory_mm")}
    short = replace(clip, **eight, visible=clip.visible[:8], frame_index=np.arange(8))
    poses = str(_poses_file(tmp_path, short))
    assert main(["render", poses, str(tmp_path / "x.mp4"), "--video", str(video), "--width", "320"]) == 2
    assert "refers to frame 5, the video has 5 frames" in capsys.readouterr().err
