"""The detector's side of `poselift video`: run `python -m posedetect` in its environment, read its JSON lines
into per-frame statistics and per-track keypoint arrays."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poselift.skeleton import coco17_to_h36m17

REPO_ROOT = Path(__file__).resolve().parents[1]
DETECTOR_ENV = REPO_ROOT / ".venv-video"  # made by `make video-setup`


class DetectorError(RuntimeError):
    """The detector could not run, or stopped with an error."""


@dataclass
class VideoInfo:
    """The `video` header line: the frames' size and rate, and which models found the people."""

    path: str
    width: int
    height: int
    fps: float
    frames: int
    layout: str
    models: dict[str, str]


@dataclass
class Track:
    """One person's keypoints over the frames where BlazePose found them (COCO-17, full-frame pixels)."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    keypoints_px: list[np.ndarray] = field(default_factory=list)  # (17, 2) each
    scores: list[np.ndarray] = field(default_factory=list)  # (17,) each
    boxes: list[np.ndarray] = field(default_factory=list)  # (4,) x1, y1, x2, y2 each

    def h36m17_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame_index (T,), keypoints_px (T, 17, 2), scores (T, 17)) in h36m17 order.

        One row per frame from the first to the last frame with a pose; frames without one inside that span
        have score 0 (missing)."""
        first, last = self.frames[0], self.frames[-1]
        frame_index = np.arange(first, last + 1)
        kp = np.zeros((len(frame_index), 17, 2))
        sc = np.zeros((len(frame_index), 17))
        rows = np.asarray(self.frames) - first
        kp[rows], sc[rows] = coco17_to_h36m17(np.stack(self.keypoints_px), np.stack(self.scores))
        kp[sc == 0] = 0.0
        return frame_index, kp, sc


@dataclass
class Detections:
    """Everything the detector said about one video."""

    info: VideoInfo
    frames: list[int] = field(default_factory=list)
    people: list[int] = field(default_factory=list)  # person boxes found per frame
    tracked: list[int] = field(default_factory=list)  # tracks alive per frame
    posed: list[int] = field(default_factory=list)  # tracks with a pose per frame
    detect_ms: list[float] = field(default_factory=list)  # person boxes + tracking + BlazePose per frame
    boxes_ms: list[float] = field(default_factory=list)  # the person detector alone
    pose_ms: list[float] = field(default_factory=list)  # BlazePose on every track's crop
    tracks: dict[int, Track] = field(default_factory=dict)
    wall_s: float = 0.0

    def add_frame(self, line: dict[str, Any]) -> None:
        self.frames.append(int(line["frame"]))
        self.people.append(int(line["people"]))
        self.tracked.append(len(line["tracks"]))
        self.detect_ms.append(float(line["detect_ms"]) + float(line["track_ms"]) + float(line["pose_ms"]))
        self.boxes_ms.append(float(line["detect_ms"]))
        self.pose_ms.append(float(line["pose_ms"]))
        posed = 0
        for row in line["tracks"]:
            if row["keypoints"] is None:
                continue
            posed += 1
            track = self.tracks.setdefault(int(row["id"]), Track(int(row["id"])))
            track.frames.append(int(line["frame"]))
            track.keypoints_px.append(np.asarray(row["keypoints"], np.float64))
            track.scores.append(np.asarray(row["scores"], np.float64))
            track.boxes.append(np.asarray(row["box"], np.float64))
        self.posed.append(posed)


def detector_python(explicit: str | None = None) -> Path:
    """The detector environment's interpreter: `explicit`, else $POSELIFT_VIDEO_PYTHON, else .venv-video's."""
    chosen = explicit or os.environ.get("POSELIFT_VIDEO_PYTHON")
    return Path(chosen) if chosen else DETECTOR_ENV / "bin" / "python"


def detector_lines(
    video: Path, python: Path, start: int = 0, max_frames: int | None = None, extra: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Run the detector on `video` and yield its JSON lines as they come; DetectorError if it fails."""
    if not python.exists():
        raise DetectorError(
            f"the detector environment is missing ({python} not found): run `make video-setup`, or point "
            "--detector-python / POSELIFT_VIDEO_PYTHON at a Python with the detector/ package installed"
        )
    command = [str(python), "-m", "posedetect", str(video), "--start", str(start), *(extra or [])]
    if max_frames is not None:
        command += ["--max-frames", str(max_frames)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "detector")}  # works without an editable install too
    # Its log (MediaPipe's native warnings) goes to a file: a pipe read only at the end could fill, stall it.
    with (
        tempfile.TemporaryFile("w+") as log,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env) as process,
    ):
        assert process.stdout is not None
        finished = False
        try:
            for raw in process.stdout:
                yield json.loads(raw)
            finished = True
        finally:
            if not finished and process.poll() is None:  # the reader stopped early: stop the detector too
                process.kill()
            code = process.wait()
        if code != 0:
            log.seek(0)
            last = [line for line in log.read().splitlines() if line.strip()][-5:]
            raise DetectorError(f"the detector exited with code {code}: " + " | ".join(last))


def saved_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of an earlier run (`detections.jsonl` in a `poselift video` output folder)."""
    try:
        with path.open() as lines:
            for number, raw in enumerate(lines, 1):
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError as error:
                    raise DetectorError(f"{path}:{number}: not a JSON line: {error}") from None
    except OSError as error:
        raise DetectorError(f"cannot read {path}: {error.strerror or error}") from None


def gather(
    lines: Iterable[dict[str, Any]], save_to: Path | None = None, progress: bool = False
) -> Detections:
    """The detector's lines gathered into a Detections; each line is also written to `save_to` if given."""
    started = time.perf_counter()
    detections: Detections | None = None
    with contextlib.ExitStack() as stack:
        saved = stack.enter_context(save_to.open("w")) if save_to is not None else None
        for line in lines:
            if saved is not None:
                saved.write(json.dumps(line, separators=(",", ":")) + "\n")
            try:
                if line["type"] == "video":
                    detections = Detections(_video_info(line))
                elif line["type"] == "frame" and detections is not None:
                    detections.add_frame(line)
                    if progress and len(detections.frames) % 50 == 0:
                        print(f"  detected {len(detections.frames)} frames", file=sys.stderr)
            except (KeyError, TypeError, ValueError) as error:
                raise DetectorError(f"a detector line is malformed ({error!r}): {str(line)[:200]}") from None
    if detections is None:
        raise DetectorError("the detector wrote no video header")
    detections.wall_s = time.perf_counter() - started
    return detections


def _video_info(line: dict[str, Any]) -> VideoInfo:
    if line["layout"] != "coco17":
        raise ValueError(f"keypoint layout {line['layout']!r}, expected 'coco17'")
    return VideoInfo(
        path=str(line["path"]),
        width=int(line["width"]),
        height=int(line["height"]),
        fps=float(line["fps"]),
        frames=int(line["frames"]),
        layout=str(line["layout"]),
        models={k: str(line[k]) for k in ("person_detector", "tracker", "pose_model")},
    )
