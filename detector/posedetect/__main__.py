"""`python -m posedetect VIDEO [--start N] [--max-frames N]`: tracks of 2D keypoints, JSON lines on stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import IO, Any

import cv2
import numpy as np

from posedetect.people import PersonDetector
from posedetect.pose import COCO17_JOINTS, TrackPose, on_person
from posedetect.tracking import CropFollower, PeopleTracker


def _round(values: np.ndarray, digits: int = 2) -> list[Any]:
    return np.round(np.asarray(values, np.float64), digits).tolist()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m posedetect", description=__doc__)
    p.add_argument("video", help="a video file OpenCV can read")
    p.add_argument("--start", type=int, default=0, help="first frame to read (default 0)")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    p.add_argument("--upscale", type=float, default=1.5, help="scale frames up for the person detector")
    p.add_argument(
        "--min-box-score", type=float, default=0.5, help="HOG SVM score below which a box is dropped"
    )
    p.add_argument("--max-missed", type=int, default=10, help="frames a track lives on without a box")
    return p.parse_args(argv)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    capture = cv2.VideoCapture(args.video)
    if not capture.isOpened():
        print(f"posedetect: cannot open video {args.video!r}", file=sys.stderr)
        return 2
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if args.start > 0:
        capture.set(cv2.CAP_PROP_POS_FRAMES, args.start)

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        out.flush()

    emit(
        {
            "type": "video",
            "path": args.video,
            "width": width,
            "height": height,
            "fps": fps,
            "frames": total,
            "start": args.start,
            "layout": "coco17",
            "joints": list(COCO17_JOINTS),
            "person_detector": f"OpenCV {cv2.__version__} HOG people detector (upscale {args.upscale})",
            "tracker": "norfair (IoU, Kalman)",
            "pose_model": "MediaPipe 0.10.21 BlazePose full (model_complexity=1), per-track crop",
        }
    )
    detector = PersonDetector(upscale=args.upscale, min_score=args.min_box_score)
    tracker = PeopleTracker(max_missed=args.max_missed)
    followers: dict[int, CropFollower] = {}
    poses: dict[int, TrackPose] = {}
    index, read = args.start, 0
    try:
        while args.max_frames is None or read < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            t0 = time.perf_counter()
            boxes = detector(frame)
            t1 = time.perf_counter()
            tracks = tracker.update(boxes)
            t2 = time.perf_counter()
            rows = []
            for track in tracks:
                follower = followers.setdefault(track.track_id, CropFollower())
                pose = poses.get(track.track_id) or poses.setdefault(track.track_id, TrackPose())
                center, side = follower.follow(track.box)
                found = pose(frame, center, side)
                if found is not None and not on_person(found[0], track.box):
                    found = None  # BlazePose followed someone else in the crop: start afresh next frame
                    pose.reset()
                rows.append(
                    {
                        "id": track.track_id,
                        "box": _round(track.box, 1),
                        "matched": track.matched,
                        "crop": _round([center[0], center[1], side], 1),
                        "keypoints": None if found is None else _round(found[0], 2),
                        "scores": None if found is None else _round(found[1], 3),
                    }
                )
            t3 = time.perf_counter()
            for gone in set(poses) - {t.track_id for t in tracks}:  # tracks that ended: free their graphs
                poses.pop(gone).close()
                followers.pop(gone, None)
            emit(
                {
                    "type": "frame",
                    "frame": index,
                    "people": len(boxes),
                    "boxes": _round(boxes, 1),
                    "tracks": rows,
                    "detect_ms": round((t1 - t0) * 1000.0, 2),
                    "track_ms": round((t2 - t1) * 1000.0, 2),
                    "pose_ms": round((t3 - t2) * 1000.0, 2),
                }
            )
            index += 1
            read += 1
    finally:
        for pose in poses.values():
            pose.close()
        capture.release()
    emit({"type": "end", "frames": read})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The JSON lines own stdout: native code (TensorFlow Lite, glog) printing to fd 1 goes to stderr instead.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return run(args, out)
    finally:
        out.close()


if __name__ == "__main__":
    sys.exit(main())
