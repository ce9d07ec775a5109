"""`poselift export-bvh` and `poselift render`: turn a poses file into a BVH animation or a video.

Bad input (a missing or malformed poses file, an unknown output type, an unwritable path) is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def export_bvh_main(argv: list[str]) -> int:
    """`poselift export-bvh POSES OUT.bvh [--units cm|mm|m]`."""
    from poselift.bvh import UNITS_PER_MM, bone_lengths_mm, rest_length_poses, write_bvh

    parser = argparse.ArgumentParser(
        prog="poselift export-bvh",
        description="Write a poses file (.json/.npz) as a BVH animation: Y-up (x right, y up, z toward "
        "the camera), T-pose rest with the clip's median bone lengths, ZXY Euler channels, the pelvis "
        "trajectory as root motion, at the clip's fps (docs/outputs.md).",
    )
    parser.add_argument("poses", type=Path, metavar="POSES", help="poses file (.json or .npz)")
    parser.add_argument("out", type=Path, metavar="OUT.bvh", help="BVH file to write")
    parser.add_argument("--units", choices=tuple(UNITS_PER_MM), default="cm", help="length unit in the file")
    args = parser.parse_args(argv)

    from poselift.poses_file import PosesFileError, load_poses_file

    try:
        poses = load_poses_file(args.poses)
    except PosesFileError as error:
        print(f"poselift export-bvh: {error}", file=sys.stderr)
        return 2
    try:
        write_bvh(args.out, poses.poses_mm, poses.fps, poses.trajectory_mm, args.units)
    except OSError as error:
        print(f"poselift export-bvh: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    centred = poses.poses_mm - poses.poses_mm[:, :1]
    lengths = bone_lengths_mm(centred)
    rescaled = float(np.max(np.linalg.norm(rest_length_poses(centred, lengths) - centred, axis=-1)))
    root = "the pelvis trajectory" if poses.has_trajectory else "the origin (no trajectory in the file)"
    print(
        f"wrote {args.out}: {poses.num_frames} frames at {poses.fps:g} fps, lengths in {args.units}, root at "
        f"{root}; bones {lengths[1:].min():.0f}-{lengths[1:].max():.0f} mm (clip medians); fixing each bone "
        f"to its median length moves a joint by at most {rescaled:.1f} mm"
    )
    return 0


def render_main(argv: list[str]) -> int:
    """`poselift render POSES [--video IN.mp4] OUT.mp4|OUT.gif`."""
    parser = argparse.ArgumentParser(
        prog="poselift render",
        description="Draw a poses file: the 2D input (over the video's frames with --video) beside the 3D "
        "skeleton with a ground plane and the trajectory, to .mp4 (H.264, through the ffmpeg imageio-ffmpeg "
        "ships) or .gif. Needs the render extra.",
    )
    parser.add_argument("poses", type=Path, metavar="POSES", help="poses file (.json or .npz)")
    parser.add_argument("out", type=Path, metavar="OUT", help="video to write: .mp4 or .gif")
    parser.add_argument("--video", type=Path, metavar="IN.mp4", help="the clip's video, drawn under the 2D")
    parser.add_argument("--width", type=int, help="picture width in pixels (default 1280 mp4, 640 gif)")
    args = parser.parse_args(argv)

    from poselift.poses_file import PosesFileError, load_poses_file

    try:
        from poselift.render import RenderError, render
    except ImportError as error:
        print(
            f"poselift render: needs the render extra (pip install 'poselift[render]'): {error}",
            file=sys.stderr,
        )
        return 2
    try:
        poses = load_poses_file(args.poses)
        count = render(poses, args.out, args.video, args.width)
    except (PosesFileError, RenderError) as error:
        print(f"poselift render: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"poselift render: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {count} frames at {poses.fps:g} fps")
    return 0
