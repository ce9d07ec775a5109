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


class TrackPose:
    """One person's BlazePose graph, run in video mode (it follows the pose from frame to frame)."""

    def __init__(self, min_confidence: float = 0.5):
        self._pose = mp.solutions.pose.Pose(
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

    def close(self) -> None:
        self._pose.close()
