"""Lift one track's keypoints to 3D: in this process (`poselift.load_lifter()`), or as its own StreamLift
session on a running `poselift serve` (gRPC). Both return the poses file's 3D fields."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from poselift.lifter import Lifter


@dataclass
class Lifted:
    """A track's 3D output, one row per input row, and the wall time the lifting took."""

    poses_mm: np.ndarray  # (T, 17, 3) root-relative, camera frame
    trajectory_mm: np.ndarray  # (T, 3) pelvis in the camera frame; zeros where the lifter gives none
    visible: np.ndarray  # (T,)
    ms: float


def seen_fraction(scores: np.ndarray) -> np.ndarray:
    """(T, 17) scores -> (T,) fraction of joints seen per frame: `visible` when the lifter gives none."""
    return (np.asarray(scores) > 0).mean(axis=-1)


def lift_in_process(
    lifter: Lifter,
    keypoints_px: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    fps: float,
    focal_px: float,
) -> Lifted:
    """Causal lifting of (T, 17, 2) h36m17 pixel keypoints with `lifter`, as a stream would get it."""
    started = time.perf_counter()
    lift_full = getattr(lifter, "lift_full", None)
    if lift_full is not None:  # lifters with a trajectory (the camera's focal length places the pelvis)
        result = lift_full(
            keypoints_px, width, height, fps, scores=scores, layout="h36m17", focal_px=focal_px
        )
        poses = np.asarray(result.poses_mm)
        root = getattr(result, "root_mm", getattr(result, "trajectory_mm", None))  # None: no root head
        trajectory = np.zeros((len(poses), 3)) if root is None else np.asarray(root)
        visible = np.asarray(result.visible)
    else:
        poses = lifter.lift(keypoints_px, width, height, fps, scores=scores, layout="h36m17")
        trajectory, visible = np.zeros((len(poses), 3)), seen_fraction(scores)
    return Lifted(poses, trajectory, visible, (time.perf_counter() - started) * 1000.0)


def _stubs() -> tuple[Any, Any]:
    """The gRPC stubs: the light client package's when installed, else the service's own."""
    for package in ("poselift_client.gen", "service.rpc.gen"):
        try:
            pb = importlib.import_module(f"{package}.poselift.v1.lifter_pb2")
            return pb, importlib.import_module(f"{package}.poselift.v1.lifter_pb2_grpc")
        except ImportError:
            continue
    raise ImportError("no gRPC stubs: install the poselift client (client/) or the serve extra")


def _has_field(message: Any, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def lift_over_grpc(
    target: str,
    keypoints_px: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    fps: float,
    focal_px: float,
    api_key: str | None = None,
    timeout_s: float = 120.0,
) -> Lifted:
    """Stream the track, one frame a message, through its own StreamLift session on `target` (host:port)."""
    import grpc

    pb, pb_grpc = _stubs()

    camera = pb.Camera(width=width, height=height, fps=fps, layout=pb.LAYOUT_H36M17)
    if _has_field(camera, "focal_px"):  # servers from before camera intrinsics assume their default
        setattr(camera, "focal_px", focal_px)  # noqa: B010 (older stubs have no such attribute)

    def requests() -> Iterator[Any]:
        yield pb.StreamLiftRequest(open=camera)
        for seq in range(len(keypoints_px)):
            frame = pb.Frame(
                seq=seq, keypoints=keypoints_px[seq].reshape(-1).tolist(), scores=scores[seq].tolist()
            )
            yield pb.StreamLiftRequest(frame=frame)

    metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
    frames = len(keypoints_px)
    poses, roots, visible = np.zeros((frames, 17, 3)), np.zeros((frames, 3)), seen_fraction(scores)
    answered = 0
    started = time.perf_counter()
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.PoseLifterStub(channel)
        for reply in stub.StreamLift(requests(), metadata=metadata, timeout=timeout_s):
            kind = reply.WhichOneof("msg")
            if kind == "pose":
                seq = int(reply.pose.seq)
                poses[seq] = np.asarray(reply.pose.joints, np.float64).reshape(17, 3)
                if _has_field(reply.pose, "root") and len(reply.pose.root) == 3:
                    roots[seq] = np.asarray(reply.pose.root, np.float64)
                if _has_field(reply.pose, "visible"):
                    visible[seq] = float(reply.pose.visible)
                answered += 1
            elif kind == "error":
                raise ValueError(f"the server refused frame {reply.error.seq}: {reply.error.message}")
    if answered != frames:
        raise RuntimeError(f"the server answered {answered} of {frames} frames")
    return Lifted(poses, roots, visible, (time.perf_counter() - started) * 1000.0)
