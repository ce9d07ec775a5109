"""Person boxes in a frame: OpenCV's HOG + linear SVM people detector (Dalal & Triggs), weights in OpenCV."""

from __future__ import annotations

import cv2
import numpy as np


class PersonDetector:
    """Upright people as boxes `(N, 5)`: x1, y1, x2, y2 (full-frame pixels), SVM score.

    The detector's window is 64 x 128 px with the person ~96 px tall in it, so the frame is scaled up by
    `upscale` first: people about 96 / upscale px tall and taller are found. Overlapping boxes are merged by
    non-maximum suppression.
    """

    def __init__(
        self, upscale: float = 1.5, min_score: float = 0.5, scale_step: float = 1.1, nms_iou: float = 0.4
    ):
        if upscale <= 0 or scale_step <= 1.0:
            raise ValueError("upscale must be > 0 and scale_step > 1")
        self.upscale = upscale
        self.min_score = min_score
        self.scale_step = scale_step
        self.nms_iou = nms_iou
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        image = frame_bgr
        if self.upscale != 1.0:
            image = cv2.resize(
                frame_bgr, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR
            )
        rects, weights = self._hog.detectMultiScale(
            image, winStride=(8, 8), padding=(8, 8), scale=self.scale_step
        )
        if len(rects) == 0:
            return np.zeros((0, 5), np.float32)
        rects = np.asarray(rects, np.float64) / self.upscale  # (N, 4) x, y, w, h
        scores = np.asarray(weights, np.float64).reshape(-1)
        keep = scores >= self.min_score
        rects, scores = rects[keep], scores[keep]
        if len(rects) == 0:
            return np.zeros((0, 5), np.float32)
        picked = cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), self.min_score, self.nms_iou)
        picked = np.asarray(picked, np.int64).reshape(-1)
        rects, scores = rects[picked], scores[picked]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:], scores[:, None]], axis=1)
        return boxes.astype(np.float32)
