"""Stream 2D keypoints to poselift over gRPC, one frame per message, and print each 3D pose's round trip.

Sources: a JSON file shaped like the REST `/v1/lift` body, an npz file (`keypoints` (T, 17, 2) pixels and
optionally `scores`, `width`, `height`, `fps`, `layout`), or a clip of the validation split seen by a virtual
camera. Frames are sent at the clip's frame rate (like a live camera; `--rate 0`: as fast as the server
answers) with at most `--in-flight` frames unanswered.

The streaming is poselift_client's `StreamLiftClient`: a broken stream (a replica gone, a server draining,
no reply within `--reply-timeout`) is resumed with `resume_session_id` on the status codes of
`poselift_client.stream.RESUMABLE` (docs/grpc.md says why those); the server says the last seq it holds, and
the client resends every frame it has no answer for; frames the server already took come back with their
stored pose, so each frame gets exactly one pose and the history is never corrupted.

    python examples/stream_client.py --val 12                       # a val clip to localhost:50051
    python examples/stream_client.py --json clip.json --target lb:50051 --api-key "$KEY" --out poses.npz
    python examples/stream_client.py --val 12 --unary               # one Lift call instead of a stream
    python examples/stream_client.py --npz clip.npz --resume SESSION_ID --first-seq 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from poselift_client import pb
from poselift_client.stream import Resumed, StreamBroken, StreamLiftClient, lift

J = 17
# The validation split of the source checkout, or of the folder POSELIFT_DATA_DIR names (as `poselift train`).
DATA_DIR = Path(os.environ.get("POSELIFT_DATA_DIR") or Path(__file__).resolve().parents[1] / "data")
VAL_DATA = DATA_DIR / "mocap" / "cmu_h36m17_val.npz"
LAYOUTS = {"h36m17": pb.LAYOUT_H36M17, "coco17": pb.LAYOUT_COCO17}


@dataclass
class Clip:
    keypoints_px: np.ndarray  # (T, 17, 2)
    width: int
    height: int
    fps: float
    layout: str = "h36m17"
    scores: np.ndarray | None = None  # (T, 17)

    def camera(self) -> pb.Camera:
        return pb.Camera(width=self.width, height=self.height, fps=self.fps, layout=LAYOUTS[self.layout])


@dataclass
class Results:
    session_id: str = ""
    seqs: list[int] = field(default_factory=list)  # answered frames, in order
    poses: list[np.ndarray] = field(default_factory=list)  # (17, 3) mm each, None-free: errors are apart
    rtt_ms: list[float] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    resumes: int = 0


def load_clip(args: argparse.Namespace) -> Clip:
    """The clip named on the command line, in pixels."""
    if args.json:
        body = json.loads(Path(args.json).read_text())
        scores = None if body.get("scores") is None else np.asarray(body["scores"], np.float32)
        return Clip(
            np.asarray(body["keypoints"], np.float32),
            int(body["width"]),
            int(body["height"]),
            float(body.get("fps", 50.0)),
            body.get("layout", "h36m17"),
            scores,
        )
    if args.npz:
        data = np.load(args.npz)

        def get(key: str, default: Any) -> Any:
            return data[key].item() if key in data.files else default

        scores = data["scores"].astype(np.float32) if "scores" in data.files else None
        return Clip(
            data["keypoints"].astype(np.float32),
            int(get("width", args.width)),
            int(get("height", args.height)),
            float(get("fps", args.fps)),
            str(get("layout", "h36m17")),
            scores,
        )
    return val_clip(args.val, args.frames)


def val_clip(segment: int, frames: int | None = None) -> Clip:
    """Segment `segment` of the val split seen by a 1920x1080 camera 4.5 m away, 1.4 m high, f = 1100 px."""
    from poselift.geometry import look_at_rotation, project_to_2d, world_to_camera

    data = np.load(VAL_DATA)
    first, length = int(data["clip_starts"][segment]), int(data["clip_lengths"][segment])
    positions = data["positions"][first : first + min(length, frames or length)].astype(np.float64)
    target = positions[:, 0].mean(axis=0)  # (3,) world mm, Z up
    camera_pos = target + 4500.0 * np.array([np.sin(np.radians(30)), -np.cos(np.radians(30)), 0.0])
    camera_pos[2] = 1400.0
    points = world_to_camera(positions, look_at_rotation(camera_pos, target), camera_pos)  # (T, 17, 3)
    return Clip(
        project_to_2d(points, 1100.0, (960.0, 540.0)).astype(np.float32), 1920, 1080, float(data["fps"])
    )


async def stream(channel: Any, clip: Clip, args: argparse.Namespace) -> Results:
    """Stream the clip (seq = first_seq + index) with poselift_client's StreamLiftClient, which resumes a
    broken stream until every frame is answered."""
    out = Results(session_id=args.resume or "")

    def on_session(info: pb.SessionInfo) -> None:
        out.session_id = info.session_id
        print(
            f"session {info.session_id}: window {info.window}, server's last seq {info.last_seq}",
            file=sys.stderr,
        )

    def on_resume(event: Resumed) -> None:
        out.resumes = event.total
        print(
            f"stream broke ({event.error}); resuming session {event.session_id} "
            f"(attempt {event.attempt} of {args.retries})",
            file=sys.stderr,
        )

    client = StreamLiftClient(
        channel,
        None if args.resume else clip.camera(),
        session_id=args.resume,
        api_key=args.api_key,
        in_flight=args.in_flight,
        reply_timeout_s=args.reply_timeout,
        max_resumes=args.retries,
        on_session=on_session,
        on_resume=on_resume,
    )
    async for answer in client.stream(
        clip.keypoints_px, clip.scores, first_seq=args.first_seq, rate_hz=args.rate
    ):
        if answer.joints_mm is None:
            out.errors.append((answer.seq, answer.error_code, answer.error_message))
            print(f"error seq={answer.seq:<5d} {answer.error_code}: {answer.error_message}")
            continue
        pose = np.asarray(answer.joints_mm, np.float32).reshape(J, 3)
        out.seqs.append(answer.seq)
        out.poses.append(pose)
        out.rtt_ms.append(answer.rtt_s * 1000.0)
        if not args.quiet:
            head = ", ".join(f"{v:7.1f}" for v in pose[10])
            print(f"pose seq={answer.seq:<5d} rtt={answer.rtt_s * 1000.0:6.2f} ms  head=({head}) mm")
    return out


def summary(out: Results, elapsed_s: float) -> str:
    rtt = np.asarray(out.rtt_ms)
    rate = len(out.seqs) / max(elapsed_s, 1e-9)
    line = (
        f"summary: session {out.session_id}: {len(out.seqs)} poses, {len(out.errors)} frame errors, "
        f"{out.resumes} resume(s) in {elapsed_s:.2f} s ({rate:.1f} poses/s)"
    )
    if len(rtt):
        p50, p90, p99 = np.percentile(rtt, [50, 90, 99])
        line += f"; round trip ms: p50 {p50:.2f}, p90 {p90:.2f}, p99 {p99:.2f}, max {rtt.max():.2f}"
    return line


async def lift_once(channel: Any, clip: Clip, args: argparse.Namespace) -> None:
    """The whole clip in one Lift call, with a deadline."""
    started = time.perf_counter()
    response = await lift(
        channel,
        clip.camera(),
        clip.keypoints_px,
        clip.scores,
        api_key=args.api_key,
        timeout_s=args.reply_timeout,
    )
    took = (time.perf_counter() - started) * 1000.0
    poses = np.asarray(response.poses, np.float32).reshape(-1, J, 3)
    head = ", ".join(f"{v:.1f}" for v in poses[-1, 10])
    print(f"Lift: {response.num_frames} poses in {took:.1f} ms; head of the last pose ({head}) mm")
    if args.out:
        np.savez(args.out, seqs=np.arange(len(poses)), poses=poses)


async def main_async(args: argparse.Namespace) -> int:
    clip = load_clip(args)
    if args.rate is None:
        args.rate = clip.fps
    async with grpc.aio.insecure_channel(args.target) as channel:
        if args.unary:
            await lift_once(channel, clip, args)
            return 0
        started = time.perf_counter()
        try:
            out = await stream(channel, clip, args)
        except StreamBroken as error:
            print(f"stream failed: {error}", file=sys.stderr)
            return 1
        print(summary(out, time.perf_counter() - started))
        if args.out:
            np.savez(
                args.out,
                seqs=np.asarray(out.seqs, np.int64),
                poses=np.asarray(out.poses).reshape(-1, J, 3),
                rtt_ms=np.asarray(out.rtt_ms),
                session_id=out.session_id,
            )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--json", help="a /v1/lift-shaped JSON file")
    source.add_argument("--npz", help="an npz with keypoints (T, 17, 2) [scores, width, height, fps, layout]")
    source.add_argument("--val", type=int, default=12, help="segment of the val split (default 12)")
    p.add_argument("--frames", type=int, default=None, help="use at most this many frames of a val segment")
    p.add_argument("--width", type=int, default=1920, help="image width for an npz without one")
    p.add_argument("--height", type=int, default=1080, help="image height for an npz without one")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate for an npz without one")
    p.add_argument("--target", default="localhost:50051", help="host:port of a replica or the balancer")
    p.add_argument("--api-key", default=None, help="sent as 'authorization: Bearer <key>'")
    p.add_argument(
        "--rate", type=float, default=None, help="frames/s to send (default: the clip's fps; 0: no pacing)"
    )
    p.add_argument("--in-flight", type=int, default=8, help="frames sent but not answered, at most")
    p.add_argument(
        "--reply-timeout", type=float, default=5.0, help="seconds to wait for a reply (Lift: the deadline)"
    )
    p.add_argument("--retries", type=int, default=5, help="resumes before giving up")
    p.add_argument("--resume", default=None, help="continue this session instead of opening one")
    p.add_argument("--first-seq", type=int, default=0, help="seq of the first frame")
    p.add_argument(
        "--unary", action="store_true", help="one Lift call for the whole clip instead of a stream"
    )
    p.add_argument("--out", default=None, help="write seqs, poses (mm) and round trips to this npz")
    p.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args())))
