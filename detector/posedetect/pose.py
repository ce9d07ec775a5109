"""BlazePose (MediaPipe 0.10.21, the full model shipped in the wheel) on the crop that follows one person."""

from __future__ import annotations

import cv2
import mediapipe as mp
import numpy as np

# COCO-17 keypoints, and the BlazePose landmark (of its 33) that is each of them.
COCO17_JOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
BLAZEPOSE_TO_COCO17 = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
CROP_PX = 256  # crops are resampled to this square size before BlazePose sees them


def crop_transform(center: tuple[float, float], side: float) -> np.ndarray:
    """(2, 3) affine map from full-frame pixels to a CROP_PX square crop of `side` px around `center`."""
    s = CROP_PX / side
    x0, y0 = center[0] - side / 2.0, center[1] - side / 2.0
    return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]])


def cut_crop(frame_bgr: np.ndarray, center: tuple[float, float], side: float) -> np.ndarray:
    """The RGB crop (CROP_PX, CROP_PX, 3); parts outside the frame are black."""
    crop = cv2.warpAffine(
        frame_bgr,
        crop_transform(center, side),
        (CROP_PX, CROP_PX),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def on_person(keypoints_px: np.ndarray, box: np.ndarray, pad: float = 0.15, share: float = 0.8) -> bool:
    """Whether a pose belongs to the person in `box` (x1, y1, x2, y2).

    It does when at least `share` of its keypoints lie in the box grown by `pad` of its height on every side.

    A crop that follows one person can hold another (people crossing, one behind the other), and BlazePose in
    video mode then happily follows the more visible one; such a pose is someone else's.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    margin = pad * (y2 - y1)
    x, y = keypoints_px[:, 0], keypoints_px[:, 1]
    inside = (x > x1 - margin) & (x < x2 + margin) & (y > y1 - margin) & (y < y2 + margin)
    return bool(inside.mean() >= share)


class TrackPose:
    """One person's BlazePose graph, run in video mode (it follows the pose from frame to frame)."""

    def __init__(self, min_confidence: float = 0.5):
        self._min_confidence = min_confidence
        self._pose = self._graph()

    def _graph(self) -> mp.solutions.pose.Pose:
        min_confidence = self._min_confidence
        return mp.solutions.pose.Pose(
            static_image_mode=False,
            model_complexity=1,  # the full model: the only one whose weights ship in the 0.10.21 wheel
            smooth_landmarks=True,
            enable_segmentation=False,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def __call__(
        self, frame_bgr: np.ndarray, center: tuple[float, float], side: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """COCO-17 keypoints ((17, 2) full-frame px) and scores ((17,) visibility), or None if no pose."""
        result = self._pose.process(cut_crop(frame_bgr, center, side))
        if result.pose_landmarks is None:
            return None
        landmarks = result.pose_landmarks.landmark
        uv = np.array([[landmarks[i].x, landmarks[i].y] for i in BLAZEPOSE_TO_COCO17]) * CROP_PX
        scores = np.clip([landmarks[i].visibility for i in BLAZEPOSE_TO_COCO17], 0.0, 1.0)
        x0, y0 = center[0] - side / 2.0, center[1] - side / 2.0
        keypoints = uv * (side / CROP_PX) + np.array([x0, y0])
        return keypoints, np.asarray(scores)

    def reset(self) -> None:
        """Forget the pose being followed: the next frame starts with BlazePose's own person detection."""
        self._pose.close()
        self._pose = self._graph()

    def close(self) -> None:
        self._pose.close()
