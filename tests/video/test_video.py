"""`poselift video` on real footage: a segment of Debian's vtest.avi (people walking, 768x576, 10 fps).

The detector runs for real in its own environment (.venv-video: OpenCV HOG boxes, norfair tracks, BlazePose on
a crop following each person); the tracks are lifted over gRPC StreamLift by a real `poselift serve` process,
then again in-process from the saved detections, and both must agree.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from poselift.poses_file import load_poses_file
from poselift_video.detections import detector_python
from tests.service.rpc.rpckit import Replica
from tests.service.testkit import CHECKPOINT, TOLERANCE_MM

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FRAMES = 24  # 2.4 s of the video; the first people enter tracks after 2 frames
MIN_TRACK_FRAMES = 8

pytestmark = [
    pytest.mark.timeout(600),  # the first test also waits for the server and the detector (~1 min when idle)
    pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} missing: make video-setup (apt opencv-doc)"),
    pytest.mark.skipif(
        not detector_python().exists(),
        reason="the detector environment .venv-video is missing: make video-setup",
    ),
]


def poselift(*args: str | Path, timeout: float = 500.0) -> subprocess.CompletedProcess[str]:
    """The `poselift` command of this environment, as a user runs it."""
    command = [str(Path(sys.executable).with_name("poselift")), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def over_grpc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`poselift video` on the first FRAMES frames, lifted by a real `poselift serve` over gRPC."""
    out = tmp_path_factory.mktemp("video-grpc")
    replica = Replica(POSELIFT_BACKEND="torch")  # the in-process lifter's runtime; no ONNX export at start
    try:
        replica.wait_ready(timeout_s=300.0)  # a loaded 2-core machine starts it slowly
        done = poselift(
            "video", VTEST, "--out", out, "--max-frames", FRAMES, "--min-track-frames", MIN_TRACK_FRAMES,
            "--server", replica.target, "--bvh",
        )  # fmt: skip
    finally:
        replica.stop()
    assert done.returncode == 0, done.stderr
    assert "gRPC StreamLift" in done.stdout
    return out


def _summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def _frames(out: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    return [line for line in lines if line["type"] == "frame"]


def test_video_finds_several_people_and_tracks_them(over_grpc: Path) -> None:
    summary = _summary(over_grpc)
    assert summary["frames_read"] == FRAMES
    assert (summary["width"], summary["height"], summary["fps"]) == (768, 576, 10.0)
    assert max(summary["per_frame"]["people"]) >= 3  # four people walk in the first seconds
    assert max(summary["per_frame"]["posed"]) >= 3
    assert len(summary["tracks"]) >= 3
    assert summary["ms_per_frame"]["detection"]["mean"] > 0
    assert summary["ms_per_frame"]["lifting_per_track_frame"] > 0


def test_video_tracks_keep_their_person(over_grpc: Path) -> None:
    """A track's box moves a little from frame to frame (people walk ~1 m/s, 10 fps), never jumps to another
    person; ids are unique within a frame; the keypoints lie on the track's person, in full-frame pixels."""
    kept = {t["track_id"] for t in _summary(over_grpc)["tracks"]}
    boxes: dict[int, dict[int, np.ndarray]] = {}
    for frame in _frames(over_grpc):
        ids = [row["id"] for row in frame["tracks"]]
        assert len(ids) == len(set(ids))
        for row in frame["tracks"]:
            box = np.asarray(row["box"])
            boxes.setdefault(row["id"], {})[frame["frame"]] = box
            if row["keypoints"] is None or row["id"] not in kept:
                continue
            keypoints = np.asarray(row["keypoints"])
            x1, y1, x2, y2 = box
            pad = 0.25 * (y2 - y1)
            inside = (
                (keypoints[:, 0] > x1 - pad) & (keypoints[:, 0] < x2 + pad)
                & (keypoints[:, 1] > y1 - pad) & (keypoints[:, 1] < y2 + pad)
            )  # fmt: skip
            assert inside.mean() >= 0.8, (frame["frame"], row["id"], keypoints.tolist(), box.tolist())
    for track_id in kept:
        frames = sorted(boxes[track_id])
        for a, b in itertools.pairwise(frames):
            if b != a + 1:
                continue
            centre_a = (boxes[track_id][a][:2] + boxes[track_id][a][2:]) / 2
            centre_b = (boxes[track_id][b][:2] + boxes[track_id][b][2:]) / 2
            height = boxes[track_id][a][3] - boxes[track_id][a][1]
            assert np.linalg.norm(centre_b - centre_a) < 0.25 * height, (track_id, a, b)


def test_video_writes_a_poses_file_and_bvh_per_track(over_grpc: Path) -> None:
    for track in _summary(over_grpc)["tracks"]:
        track_id = track["track_id"]
        npz = load_poses_file(over_grpc / f"track_{track_id}.npz")
        js = load_poses_file(over_grpc / f"track_{track_id}.json")
        rows = track["rows"]
        assert npz.poses_mm.shape == (rows, 17, 3) and npz.keypoints_px.shape == (rows, 17, 2)
        assert npz.track_id == js.track_id == track_id
        assert npz.frame_index is not None
        assert npz.frame_index.tolist() == list(range(track["first_frame"], track["last_frame"] + 1))
        assert np.isfinite(npz.poses_mm).all() and np.isfinite(npz.trajectory_mm).all()
        np.testing.assert_allclose(js.poses_mm, npz.poses_mm, atol=1e-3)
        assert (npz.width, npz.height, npz.fps) == (768, 576, 10.0)
        assert np.allclose(npz.poses_mm[:, 0], 0.0)  # root-relative
        # a person's size: head top to mid-ankle and thigh, over the frames where the person was seen
        seen = npz.scores.max(axis=1) > 0  # rows with a pose (not the gaps between)
        poses = npz.poses_mm[seen]
        stature = np.linalg.norm(poses[:, 10] - (poses[:, 3] + poses[:, 6]) / 2, axis=-1)
        thigh = np.linalg.norm(poses[:, 1] - poses[:, 2], axis=-1)
        assert 1000 < np.median(stature) < 2200 and 250 < np.median(thigh) < 650
        bvh = (over_grpc / f"track_{track_id}.bvh").read_text()
        assert bvh.startswith("HIERARCHY") and f"Frames: {rows}" in bvh


def test_video_in_process_lifting_matches_grpc(over_grpc: Path, tmp_path: Path) -> None:
    """The saved detections lifted in this process give the poses the server's sessions gave."""
    done = poselift(
        "video", VTEST, "--out", tmp_path, "--detections", over_grpc / "detections.jsonl",
        "--min-track-frames", MIN_TRACK_FRAMES, "--checkpoint", CHECKPOINT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "in-process" in done.stdout
    tracks = _summary(over_grpc)["tracks"]
    assert [t["track_id"] for t in _summary(tmp_path)["tracks"]] == [t["track_id"] for t in tracks]
    for track in tracks:
        name = f"track_{track['track_id']}.npz"
        served, local = load_poses_file(over_grpc / name), load_poses_file(tmp_path / name)
        np.testing.assert_allclose(local.keypoints_px, served.keypoints_px)
        np.testing.assert_allclose(local.poses_mm, served.poses_mm, atol=TOLERANCE_MM)


def test_video_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = poselift("video", tmp_path / "nothing.mp4", "--out", tmp_path / "out", timeout=240)
    assert missing.returncode == 2 and "no such video file" in missing.stderr
    no_env = poselift(
        "video", VTEST, "--out", tmp_path / "out", "--detector-python", tmp_path / "python", timeout=240
    )
    assert no_env.returncode == 2 and "make video-setup" in no_env.stderr
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    broken = poselift("video", not_a_video, "--out", tmp_path / "out", timeout=240)
    assert broken.returncode == 2 and "cannot open video" in broken.stderr
    assert "Traceback" not in missing.stderr + no_env.stderr + broken.stderr
