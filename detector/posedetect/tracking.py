"""Person tracks from per-frame boxes (norfair: Kalman-filtered boxes matched by IoU), and the crop that
follows each track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from norfair import Detection, Tracker


@dataclass
class TrackedBox:
    """A live track this frame: its id, its (Kalman) box x1, y1, x2, y2, and whether a box matched it now."""

    track_id: int
    box: np.ndarray  # (4,)
    matched: bool


class PeopleTracker:
    """Boxes in, tracks out. A box joins the track it overlaps best (IoU >= 1 - max_distance); a track starts
    after `init_frames` consecutive matches and ends after `max_missed` frames without one."""

    def __init__(self, max_distance: float = 0.7, max_missed: int = 10, init_frames: int = 2):
        self._tracker = Tracker(
            distance_function="iou",
            distance_threshold=max_distance,
            hit_counter_max=max_missed,
            initialization_delay=init_frames,
        )
        self._frame = 0

    def update(self, boxes: np.ndarray) -> list[TrackedBox]:
        """`boxes` (N, 5) x1, y1, x2, y2, score for this frame -> the tracks alive after it."""
        self._frame += 1
        detections = [
            Detection(points=b[:4].reshape(2, 2).astype(np.float64), scores=np.full(2, float(b[4])))
            for b in boxes
        ]
        out = []
        for obj in self._tracker.update(detections=detections):
            matched = obj.last_detection is not None and any(obj.last_detection is d for d in detections)
            out.append(TrackedBox(int(obj.id), np.asarray(obj.estimate, np.float64).reshape(4), matched))
        return out


class CropFollower:
    """A square crop around one person that follows the track's box smoothly.

    The side is `pad` times the box's longer side (room for arms and feet), the centre and side move by
    `smoothing` of the way towards the new box each frame, so BlazePose sees a steady, centred person.
    """

    def __init__(self, pad: float = 1.25, smoothing: float = 0.5, min_side: float = 48.0):
        self.pad, self.smoothing, self.min_side = pad, smoothing, min_side
        self.center: tuple[float, float] | None = None
        self.side = 0.0

    def follow(self, box: np.ndarray) -> tuple[tuple[float, float], float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        center = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
        side = max(self.min_side, self.pad * max(x2 - x1, y2 - y1))
        if self.center is None:
            self.center, self.side = center, side
        else:
            a = self.smoothing
            self.center = (
                self.center[0] + a * (center[0] - self.center[0]),
                self.center[1] + a * (center[1] - self.center[1]),
            )
            self.side += a * (side - self.side)
        return self.center, self.side
