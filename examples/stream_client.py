"""Stream 2D keypoints to poselift over gRPC, one frame per message, and print each 3D pose's round trip.

Sources: a JSON file shaped like the REST `/v1/lift` body, an npz file (`keypoints` (T, 17, 2) pixels and
optionally `scores`, `width`, `height`, `fps`, `layout`), or a clip of the validation split seen by a virtual
camera. Frames are sent at the clip's frame rate (like a live camera; `--rate 0`: as fast as the server
answers) with at most `--in-flight` frames unanswered.

A broken stream (a replica gone, a server draining, no reply within `--reply-timeout`) is resumed with
`resume_session_id`: the server says the last seq it holds, and the client resends every frame it has no
answer for; frames the server already took come back with their stored pose, so each frame gets exactly one
pose and the history is never corrupted.

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
from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

J = 17
# The validation split of the source checkout, or of the folder POSELIFT_DATA_DIR names (as `poselift train`).
DATA_DIR = Path(os.environ.get("POSELIFT_DATA_DIR") or Path(__file__).resolve().parents[1] / "data")
VAL_DATA = DATA_DIR / "mocap" / "cmu_h36m17_val.npz"
LAYOUTS = {"h36m17": pb.LAYOUT_H36M17, "coco17": pb.LAYOUT_COCO17}
# What a broken stream may end with: a replica killed (UNAVAILABLE, or a reset stream through a balancer),
# a server draining (UNAVAILABLE), a reply that never came (our own DEADLINE_EXCEEDED). Others are final.
RESUMABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}


class StreamBroken(Exception):
    """The stream ended before every frame was answered."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code


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


def frame_message(clip: Clip, index: int, seq: int) -> pb.StreamLiftRequest:
    scores = [] if clip.scores is None else clip.scores[index].tolist()
    return pb.StreamLiftRequest(
        frame=pb.Frame(seq=seq, keypoints=clip.keypoints_px[index].reshape(-1).tolist(), scores=scores)
    )


async def stream(stub: Any, clip: Clip, args: argparse.Namespace, metadata: list[tuple[str, str]]) -> Results:
    """Stream the clip (seq = first_seq + index), resuming a broken stream until every frame is answered."""
    out = Results(session_id=args.resume or "")
    while True:
        if out.session_id:
            first = pb.StreamLiftRequest(resume_session_id=out.session_id)
        else:
            first = pb.StreamLiftRequest(open=clip.camera())
        try:
            await _attempt(stub, clip, args, metadata, first, out)
            return out
        except StreamBroken as error:
            if error.code not in RESUMABLE or not out.session_id or out.resumes >= args.retries:
                raise
            out.resumes += 1
            print(
                f"stream broke ({error}); resuming session {out.session_id} "
                f"(attempt {out.resumes} of {args.retries})",
                file=sys.stderr,
            )
            await asyncio.sleep(min(0.1 * 2**out.resumes, 2.0))


async def _attempt(
    stub: Any,
    clip: Clip,
    args: argparse.Namespace,
    metadata: list[tuple[str, str]],
    first: pb.StreamLiftRequest,
    out: Results,
) -> None:
    """One stream: open or resume, send every frame not answered yet, read their replies."""
    call = stub.StreamLift(metadata=metadata)
    sender: asyncio.Task[None] | None = None
    try:
        await call.write(first)
        reply = await _read(call, args.reply_timeout)
        if reply.WhichOneof("msg") != "session":
            raise RuntimeError(f"expected a session reply, got {reply}")
        info = reply.session
        out.session_id = info.session_id
        answered = len(out.seqs) + len(out.errors)  # replies come in order: the answered frames are a prefix
        # Resend what has no reply yet; if the store lost recent frames (a Redis restart without them), also
        # what it lost, so its history is whole again; their replies were recorded already and are skipped.
        start = max(0, min(answered, info.last_seq - args.first_seq + 1))
        print(
            f"session {info.session_id}: window {info.window}, server's last seq {info.last_seq}; "
            f"sending from seq {args.first_seq + start}",
            file=sys.stderr,
        )
        sent_at: dict[int, float] = {}
        window = asyncio.Semaphore(args.in_flight)

        async def send() -> None:
            started = time.perf_counter()
            for index in range(start, len(clip.keypoints_px)):
                if args.rate > 0:  # pace like a camera: frame k leaves at k / rate
                    await asyncio.sleep(max(0.0, started + (index - start) / args.rate - time.perf_counter()))
                await window.acquire()
                seq = args.first_seq + index
                sent_at[seq] = time.perf_counter()
                await call.write(frame_message(clip, index, seq))
            await call.done_writing()

        sender = asyncio.create_task(send())
        for index in range(start, len(clip.keypoints_px)):
            reply = await _read(call, args.reply_timeout)
            window.release()
            if index >= answered:
                _record(reply, sent_at, out, args.quiet)
        await sender
        if await call.code() != grpc.StatusCode.OK:
            raise StreamBroken(await call.code(), await call.details())
    except grpc.aio.AioRpcError as error:
        raise StreamBroken(error.code(), error.details() or "") from error
    finally:
        if sender is not None:
            sender.cancel()
        call.cancel()


async def _read(call: Any, timeout_s: float) -> pb.StreamLiftResponse:
    """The next reply; StreamBroken if none comes within `timeout_s` or the stream ended."""
    try:
        reply = await asyncio.wait_for(call.read(), timeout_s)
    except TimeoutError as error:
        raise StreamBroken(grpc.StatusCode.DEADLINE_EXCEEDED, f"no reply within {timeout_s} s") from error
    if reply is grpc.aio.EOF:
        code = await call.code()
        raise StreamBroken(
            grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.OK else code,
            f"the stream ended before every frame was answered ({await call.details()})",
        )
    return reply


def _record(reply: pb.StreamLiftResponse, sent_at: dict[int, float], out: Results, quiet: bool) -> None:
    kind = reply.WhichOneof("msg")
    if kind == "pose":
        rtt = (time.perf_counter() - sent_at[reply.pose.seq]) * 1000.0
        pose = np.asarray(reply.pose.joints, np.float32).reshape(J, 3)
        out.seqs.append(reply.pose.seq)
        out.poses.append(pose)
        out.rtt_ms.append(rtt)
        if not quiet:
            head = ", ".join(f"{v:7.1f}" for v in pose[10])
            print(f"pose seq={reply.pose.seq:<5d} rtt={rtt:6.2f} ms  head=({head}) mm")
    elif kind == "error":
        out.errors.append((reply.error.seq, reply.error.code, reply.error.message))
        print(f"error seq={reply.error.seq:<5d} {reply.error.code}: {reply.error.message}")
    else:
        raise RuntimeError(f"unexpected reply {reply}")


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


async def lift_once(stub: Any, clip: Clip, args: argparse.Namespace, metadata: list[tuple[str, str]]) -> None:
    """The whole clip in one Lift call, with a deadline."""
    request = pb.LiftRequest(
        camera=clip.camera(),
        num_frames=len(clip.keypoints_px),
        keypoints=clip.keypoints_px.reshape(-1).tolist(),
        scores=[] if clip.scores is None else clip.scores.reshape(-1).tolist(),
    )
    started = time.perf_counter()
    response = await stub.Lift(request, metadata=metadata, timeout=args.reply_timeout)
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
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = pb_grpc.PoseLifterStub(channel)
        if args.unary:
            await lift_once(stub, clip, args, metadata)
            return 0
        started = time.perf_counter()
        try:
            out = await stream(stub, clip, args, metadata)
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
