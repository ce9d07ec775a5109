"""The BVH round-trip figures in docs/outputs.md: `python -m tests.poselift.bvh_roundtrip` from the repo root.

Every val segment, as mocap seen through the test camera and as the default lifter's output for it, is written
as BVH and read back by pybvh; prints the largest joint distance from the poses with each bone at its rest
(median) length, and from the raw poses (whose bones change length from frame to frame).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from poselift import load_lifter
from poselift.bvh import UNITS_PER_MM, rest_length_poses, write_bvh
from tests.poselift.poseskit import mocap_poses, val_segments
from tests.poselift.test_bvh import read_back_mm


def main() -> None:
    lifter = load_lifter("seq2seq", backend="torch")
    segments = len(val_segments())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.bvh"
        for kind in ("mocap", f"lifted ({lifter.checkpoint_id})"):
            fit = raw = 0.0
            frames, raw_sum = 0, 0.0
            for segment in range(segments):
                clip = mocap_poses(segment=segment)
                poses = clip.poses_mm
                if kind != "mocap":
                    poses = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps).astype(float)
                write_bvh(path, poses, clip.fps, clip.trajectory_mm, units="cm")
                got = read_back_mm(path) / UNITS_PER_MM["cm"]
                root = clip.trajectory_mm[:, None]
                fit = max(fit, float(np.linalg.norm(got - rest_length_poses(poses) - root, axis=-1).max()))
                raw_error = np.linalg.norm(got - poses - root, axis=-1)  # (T, 17)
                raw, raw_sum = max(raw, float(raw_error.max())), raw_sum + float(raw_error.mean(axis=1).sum())
                frames += clip.num_frames
            print(
                f"{kind}: {segments} val segments, {frames} frames; max |FK - poses at rest lengths| "
                f"{fit:.1e} mm; |FK - raw poses| max {raw:.1f} mm, mean {raw_sum / frames:.1f} mm"
            )


if __name__ == "__main__":
    main()
