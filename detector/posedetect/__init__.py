"""posedetect: people in a video -> tracks of 2D keypoints, for `poselift video`.

Runs in its own environment (.venv-video: MediaPipe 0.10.21, OpenCV, norfair) and imports nothing of poselift.
`python -m posedetect VIDEO` writes one JSON object per line to stdout (docs/video.md):

- a `video` header (size, frame rate, keypoint layout, the models used),
- one `frame` line per frame read: the person boxes found, the tracks alive, each with its box, the crop that
  follows it and its COCO-17 keypoints in full-frame pixels with scores (null where no pose was found),
  and the milliseconds spent detecting, tracking and posing,
- an `end` line with the number of frames.
"""

__version__ = "0.1.0"
