"""`poselift video IN.mp4 --out DIR`: people in a video -> one poses file (npz + JSON) per track, a BVH and a
render per track on request, and summary.json (people and tracks per frame, ms per frame)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from poselift_video.detections import (
    Detections,
    DetectorError,
    Track,
    detector_lines,
    detector_python,
    gather,
    saved_lines,
)
from poselift_video.lifting import Lifted, lift_in_process, lift_over_grpc


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="poselift video",
        description="Find and track the people in a video (OpenCV HOG boxes, norfair tracks, MediaPipe "
        "BlazePose on a crop that follows each person, in the .venv-video environment), lift each track to "
        "3D as its own session, and write per track: track_<id>.npz/.json (poses file), with --bvh "
        "track_<id>.bvh, with --render track_<id>.mp4; and summary.json. See docs/video.md.",
    )
    p.add_argument("video", type=Path, metavar="IN", help="video file (anything OpenCV reads: mp4, avi, ...)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (created)")
    p.add_argument(
        "--server",
        default=None,
        metavar="HOST:PORT",
        help="lift over gRPC StreamLift on this poselift serve (default: in this process)",
    )
    p.add_argument("--api-key", default=None, help="API key for --server")
    p.add_argument(
        "--checkpoint", default=None, help="in-process lifter: shipped name or path (default model)"
    )
    p.add_argument("--start", type=int, default=0, help="first video frame to read")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    p.add_argument(
        "--min-track-frames",
        type=int,
        default=10,
        help="drop tracks with a pose in fewer frames than this (default 10)",
    )
    p.add_argument(
        "--focal-px",
        type=float,
        default=None,
        help="the camera's focal length in pixels (default: a 65° field of view)",
    )
    p.add_argument("--bvh", action="store_true", help="also write track_<id>.bvh")
    p.add_argument("--render", action="store_true", help="also write track_<id>.mp4 over the video")
    p.add_argument(
        "--detector-python",
        default=None,
        help="Python of the detector environment (default .venv-video/bin/python; or POSELIFT_VIDEO_PYTHON)",
    )
    p.add_argument(
        "--detections",
        type=Path,
        default=None,
        metavar="FILE",
        help="reuse the detector's lines of an earlier run (DIR/detections.jsonl) instead of detecting again",
    )
    p.add_argument("--upscale", type=float, default=None, help="detector: scale frames up by this for HOG")
    return p.parse_args(argv)


def default_focal(width: int, height: int) -> float:
    """The lifter's default focal length (a 65° field of view across the longer side)."""
    from poselift import geometry

    if hasattr(geometry, "default_focal_px"):
        return float(geometry.default_focal_px(width, height))
    return float(max(width, height) / (2.0 * np.tan(np.deg2rad(65.0) / 2.0)))


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    a = np.asarray(values, np.float64)
    return {
        "mean": round(float(a.mean()), 2),
        "median": round(float(np.median(a)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
    }


def write_track(
    out: Path,
    track: Track,
    detections: Detections,
    lifted: Lifted,
    focal_px: float,
    frame_index: np.ndarray,
    keypoints_px: np.ndarray,
    scores: np.ndarray,
) -> list[Path]:
    """track_<id>.npz and track_<id>.json in the poses-file format; returns the paths written."""
    from poselift.poses_file import Poses, save_poses_file

    info = detections.info
    poses = Poses(
        fps=info.fps,
        width=info.width,
        height=info.height,
        focal_px=focal_px,
        keypoints_px=keypoints_px,
        scores=scores,
        poses_mm=lifted.poses_mm,
        trajectory_mm=lifted.trajectory_mm,
        visible=lifted.visible,
        track_id=track.track_id,
        frame_index=frame_index,
    )
    paths = [out / f"track_{track.track_id}.npz", out / f"track_{track.track_id}.json"]
    for path in paths:
        save_poses_file(path, poses)
    return paths


def _extras(args: argparse.Namespace, out: Path, poses_path: Path, track_id: int) -> dict[str, str]:
    """BVH and render of one track, as asked; what each produced or why it could not."""
    done: dict[str, str] = {}
    if args.bvh:
        from poselift.bvh import write_bvh
        from poselift.poses_file import load_poses_file

        poses = load_poses_file(poses_path)
        path = out / f"track_{track_id}.bvh"
        write_bvh(path, poses.poses_mm, poses.fps, poses.trajectory_mm)
        done["bvh"] = path.name
    if args.render:
        try:
            from poselift.render import render
        except ImportError as error:  # the render extra (matplotlib, imageio-ffmpeg) is not installed
            done["render"] = f"unavailable: {error} (pip install 'poselift[render]')"
        else:
            from poselift.poses_file import load_poses_file

            path = out / f"track_{track_id}.mp4"
            render(load_poses_file(poses_path), path, args.video)
            done["render"] = path.name
    return done


def video_main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the detector subprocess is stopped too (detections.detector_lines).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not args.video.is_file():
        print(f"poselift video: no such video file: {args.video}", file=sys.stderr)
        return 2
    if args.detections is not None and not args.detections.is_file():
        print(f"poselift video: no such detections file: {args.detections}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"poselift video: cannot create {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    extra = [] if args.upscale is None else ["--upscale", str(args.upscale)]
    if args.detections is not None:
        lines = saved_lines(args.detections)
        print(f"reading the detections in {args.detections} ...", file=sys.stderr)
    else:
        python = detector_python(args.detector_python)
        lines = detector_lines(args.video, python, args.start, args.max_frames, extra)
        print(f"detecting people in {args.video} ...", file=sys.stderr)
    saved = args.out / "detections.jsonl"
    try:
        same = args.detections is not None and args.detections.resolve() == saved.resolve()
        detections = gather(lines, None if same else saved, progress=True)
    except DetectorError as error:
        print(f"poselift video: {error}", file=sys.stderr)
        return 2
    info = detections.info
    if not detections.frames:
        print(f"poselift video: no frame could be read from {args.video}", file=sys.stderr)
        return 2
    focal_px = args.focal_px or default_focal(info.width, info.height)

    lifter = None
    if args.server:
        lifting = f"gRPC StreamLift on {args.server}, one session per track"
    else:
        from poselift.lifter import load_lifter

        lifter = load_lifter(args.checkpoint) if args.checkpoint else load_lifter()
        lifting = f"in-process, checkpoint {lifter.checkpoint_id}"
    kept = {i: t for i, t in detections.tracks.items() if len(t.frames) >= args.min_track_frames}
    dropped = sorted(set(detections.tracks) - set(kept))
    tracks_out: list[dict[str, Any]] = []
    lift_ms, lifted_rows = 0.0, 0
    started = time.perf_counter()
    for track_id, track in sorted(kept.items()):
        frame_index, keypoints_px, scores = track.h36m17_rows()
        camera = (info.width, info.height, info.fps, focal_px)
        try:
            if lifter is not None:
                lifted = lift_in_process(lifter, keypoints_px, scores, *camera)
            else:
                lifted = lift_over_grpc(args.server, keypoints_px, scores, *camera, api_key=args.api_key)
        except Exception as error:  # a refused or broken session: say which track and why, then stop
            print(f"poselift video: lifting track {track_id} failed: {error}", file=sys.stderr)
            return 1
        lift_ms += lifted.ms
        lifted_rows += len(frame_index)
        paths = write_track(args.out, track, detections, lifted, focal_px, frame_index, keypoints_px, scores)
        files = [p.name for p in paths]
        extras = _extras(args, args.out, paths[0], track_id)
        files += [v for v in extras.values() if not v.startswith("unavailable")]
        tracks_out.append(
            {
                "track_id": track_id,
                "first_frame": int(frame_index[0]),
                "last_frame": int(frame_index[-1]),
                "rows": len(frame_index),
                "posed_frames": len(track.frames),
                "lift_ms": round(lifted.ms, 1),
                "files": files,
                **{k: v for k, v in extras.items() if v.startswith("unavailable")},
            }
        )
    lift_wall_s = time.perf_counter() - started
    summary = {
        "video": info.path,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "frames_read": len(detections.frames),
        "first_frame": detections.frames[0],
        "focal_px": focal_px,
        "models": info.models,
        "lifting": lifting,
        "tracks": tracks_out,
        "dropped_tracks": {"ids": dropped, "reason": f"a pose in < {args.min_track_frames} frames"},
        "per_frame": {
            "frame": detections.frames,
            "people": detections.people,
            "tracked": detections.tracked,
            "posed": detections.posed,
        },
        "ms_per_frame": {
            "detection": _stats(detections.detect_ms),
            "person_boxes": _stats(detections.boxes_ms),
            "blazepose_all_tracks": _stats(detections.pose_ms),
            "lifting_per_track_frame": round(lift_ms / max(lifted_rows, 1), 3),
            "lifting_per_video_frame": round(lift_ms / len(detections.frames), 3),
        },
        "wall_s": {"detection": round(detections.wall_s, 2), "lifting": round(lift_wall_s, 2)},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(report(summary))
    return 0


def report(summary: dict[str, Any]) -> str:
    """summary.json in a few lines."""
    per_frame = summary["per_frame"]
    ms = summary["ms_per_frame"]
    lines = [
        f"{summary['video']}: {summary['frames_read']} frames from {summary['first_frame']}, "
        f"{summary['width']}x{summary['height']} at {summary['fps']:g} fps; lifting {summary['lifting']}",
        f"people found per frame (person boxes): mean {np.mean(per_frame['people']):.2f}, "
        f"max {max(per_frame['people'])}; tracked with a pose per frame: "
        f"mean {np.mean(per_frame['posed']):.2f}, max {max(per_frame['posed'])}",
        f"tracks kept: {len(summary['tracks'])} (dropped {len(summary['dropped_tracks']['ids'])}: "
        f"{summary['dropped_tracks']['reason']})",
    ]
    for t in summary["tracks"]:
        lines.append(
            f"  track {t['track_id']:>3}: frames {t['first_frame']}-{t['last_frame']} "
            f"({t['posed_frames']} with a pose) -> {', '.join(t['files'])}"
        )
        lines += [f"    {key}: {t[key]}" for key in ("render", "bvh") if key in t]
    lines.append(
        f"ms per frame: detection (boxes + tracking + BlazePose, all people) "
        f"mean {ms['detection']['mean']:.1f}, median {ms['detection']['median']:.1f} "
        f"(person boxes {ms['person_boxes']['median']:.1f}, "
        f"BlazePose {ms['blazepose_all_tracks']['median']:.1f}); "
        f"lifting {ms['lifting_per_track_frame']:.2f} per track frame, "
        f"{ms['lifting_per_video_frame']:.2f} per video frame"
    )
    return "\n".join(lines)
