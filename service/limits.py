"""What a request may hold: the limits (each number once) and the checks of them, for both transports.

The lifting core runs these checks for REST and gRPC alike, so both refuse the same requests with the same
message and the same location (`service.errors.Location`, in the REST bodies' field names). REST's schema
(`service.api.schemas`) documents the same numbers from here; its pydantic models parse types only. The
limits that are settings (frames per request, poses held, body size) are `service.config.Settings`'.

`python -m service.limits` prints the limits table of docs/rest.md (a test checks that the doc has it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from poselift.inputs import MAX_FPS, MAX_PIXELS
from poselift.skeleton import LAYOUTS, NUM_JOINTS
from service.errors import InvalidInput, Location
from service.sessions import DEFAULT_FPS, Camera

MAX_IMAGE_PX = 100_000  # image width and height, pixels
MAX_FOCAL_PX = 1e6  # focal length, pixels
MAX_PRINCIPAL_PX = 1e6  # |principal point coordinate|, pixels
MAX_KEYPOINT_PX = MAX_PIXELS  # |keypoint coordinate| of a joint that is present (score > 0), pixels
MAX_SEQ = 2**63 - 1  # a session frame's seq (int64, although gRPC carries it as uint64)
MAX_SESSION_HISTORY = 512  # frames a session keeps for its windows at most (590 fps for the 27-frame tcn)
MODES = ("causal", "offline")


def check_camera(camera: Camera) -> None:
    """Raise InvalidInput at the camera field that is unusable: layout, image size, fps, intrinsics."""
    if camera.layout not in LAYOUTS:
        raise InvalidInput(
            f"unknown layout {camera.layout!r}; expected one of {', '.join(LAYOUTS)}", ("layout",)
        )
    for name, value in (("width", camera.width), ("height", camera.height)):
        if not (_finite(value) and value == int(value) and 1 <= value <= MAX_IMAGE_PX):
            raise InvalidInput(
                f"{name} must be a whole number of pixels from 1 to {MAX_IMAGE_PX}, got {_shown(value)}",
                (name,),
            )
    if not (_finite(camera.fps) and 0 < camera.fps <= MAX_FPS):
        raise InvalidInput(f"fps must be in (0, {MAX_FPS:g}], got {_shown(camera.fps)}", ("fps",))
    focal = camera.focal_px
    if focal is not None and not (_finite(focal) and 0 < focal <= MAX_FOCAL_PX):
        raise InvalidInput(
            f"focal_px must be a positive number of pixels, at most {MAX_FOCAL_PX:,.0f}, got {_shown(focal)}",
            ("focal_px",),
        )
    principal: Sequence[float] | None = camera.principal_px
    if principal is None:
        return
    if len(principal) != 2:
        raise InvalidInput(
            f"principal_px must be two numbers (cx, cy), got {len(principal)}", ("principal_px",)
        )
    for index, value in enumerate(principal):
        if not (_finite(value) and abs(value) <= MAX_PRINCIPAL_PX):
            raise InvalidInput(
                f"principal_px must be finite pixel coordinates within ±{MAX_PRINCIPAL_PX:,.0f}, "
                f"got {_shown(value)}",
                ("principal_px", index),
            )


def _finite(value: float) -> bool:
    """A finite number (False for a JSON integer too large for a float, which REST may carry)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown(value: float) -> str:
    """A number for a message: 6 significant digits (a float32 from gRPC reads as the float64 from REST)."""
    try:
        return f"{value:g}" if not float(value).is_integer() else f"{value:.10g}"
    except OverflowError:
        return "a number too large for a float"


def check_mode(mode: str, offline_capable: bool, kind: str) -> None:
    """Raise InvalidInput at `mode` unless it is one of MODES this model can run."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be 'causal' or 'offline', got {mode!r}", ("mode",))
    if mode == "offline" and not offline_capable:
        raise InvalidInput(f"mode 'offline' is the tcn model's; this server runs {kind}", ("mode",))


def check_seq(seq: Any, location: Location) -> int:
    """`seq` if it is an integer in [0, MAX_SEQ], else InvalidInput at `location`."""
    if isinstance(seq, bool) or not isinstance(seq, int | np.integer) or not 0 <= seq <= MAX_SEQ:
        shown = repr(seq) if len(repr(seq)) <= 40 else repr(seq)[:40] + "..."
        raise InvalidInput(f"seq must be an integer in [0, 2^63-1], got {shown}", location)
    return int(seq)


def as_array(values: Any, location: Location, shape: tuple[int, ...]) -> np.ndarray:
    """`values` as a float64 array of `shape` (-1: any length), or InvalidInput.

    The error is at `location` when `values` form a regular array of another shape (every frame equally
    wrong, or a flat gRPC list of the wrong length: the same request), and at the first misfit inside when
    they do not (nested JSON lists of unequal lengths, or a part that is no number).
    """
    want = _shape_text(shape)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        where = _misfit(values, shape, location)
        raise InvalidInput(
            f"{location[-1] if location else 'values'} must be numbers of shape {want}; this part does "
            "not fit",
            where,
        ) from None
    if array.ndim != len(shape) or any(w not in (-1, got) for w, got in zip(shape, array.shape, strict=True)):
        name = location[-1] if location else "values"
        raise InvalidInput(f"{name} must have shape {want}, got {array.shape}", location)
    return array


def _misfit(values: Any, shape: tuple[int, ...], location: Location) -> Location:
    """The location of the first part of nested `values` that is not of `shape` (`location` if none is)."""
    if not shape:
        return location
    if not isinstance(values, list | tuple) or shape[0] not in (-1, len(values)):
        return location
    for index, item in enumerate(values):
        if not shape[1:]:
            if isinstance(item, bool) or not isinstance(item, int | float):
                return (*location, index)
            continue
        if not isinstance(item, list | tuple) or shape[1] not in (-1, len(item)):
            return (*location, index)
        inner = _misfit(item, shape[1:], (*location, index))
        if inner != (*location, index):
            return inner
    return location


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("frames" if n == -1 else str(n) for n in shape) + ")"


def check_values(keypoints: np.ndarray, scores: np.ndarray | None) -> InvalidInput | None:
    """The first value of (T, 17, 2) keypoints or (T, 17) scores that is out of its limits, as an error at
    ("scores", t, j) or ("keypoints", t, j); None if all are within them.

    `poselift.inputs.prepare_keypoints` makes the same checks in whole-array passes; this names the place,
    for a request it refused. A joint with score 0 is missing: its coordinates may be anything.
    """
    present = np.ones(keypoints.shape[:2], bool)
    if scores is not None:
        bad = ~((scores >= 0.0) & (scores <= 1.0))
        if bad.any():
            t, j = (int(i) for i in np.argwhere(bad)[0])
            return InvalidInput(
                f"scores must be finite numbers in [0, 1], got {scores[t, j]:g}", ("scores", t, j)
            )
        present = scores > 0
    bad = present & ~(np.abs(keypoints) <= MAX_KEYPOINT_PX).all(axis=-1)
    if bad.any():
        t, j = (int(i) for i in np.argwhere(bad)[0])
        point = keypoints[t, j]
        if not np.isfinite(point).all():
            message = "keypoints must be finite numbers (NaN/inf found in a joint whose score is > 0)"
        else:
            message = (
                f"keypoints must be within ±{MAX_KEYPOINT_PX:,} pixels, got ({point[0]:g}, {point[1]:g})"
            )
        return InvalidInput(message, ("keypoints", t, j))
    return None


def limits_table() -> str:
    """The limits as the markdown table of docs/rest.md ("Limits"), from the constants above."""
    layouts, modes = ", ".join(f"`{n}`" for n in LAYOUTS), ", ".join(f"`{m}`" for m in MODES)
    kp_limit = f"finite, within ±{MAX_KEYPOINT_PX:,} px (a joint whose score is 0 may hold anything)"
    rows = [
        ("`layout`", "`Camera.layout` (unset: h36m17)", f"one of {layouts}", "`layout`"),
        ("`width`, `height`", "`Camera.width`, `.height`", f"whole pixels, 1 to {MAX_IMAGE_PX:,}",
         "`width`, `height`"),
        ("`fps`", f"`Camera.fps` (unset: {DEFAULT_FPS:g})",
         f"(0, {MAX_FPS:g}]; a session's also low enough that its window spans at most {MAX_SESSION_HISTORY} "
         "frames (590 fps for the 27-frame tcn)", "`fps`"),
        ("`focal_px`", "`Camera.focal_px` (unset: default)", f"(0, {MAX_FOCAL_PX:,.0f}] px", "`focal_px`"),
        ("`principal_px`", "`Camera.cx`, `.cy` (both unset: centre)",
         f"two numbers, finite, within ±{MAX_PRINCIPAL_PX:,.0f} px", "`principal_px[0]` (cx), `[1]` (cy)"),
        ("`mode`", "`LiftRequest.mode`", f"one of {modes}", "`mode`"),
        ("`keypoints`", "`LiftRequest.keypoints`, `num_frames`",
         f"(T, {NUM_JOINTS}, 2), 1 ≤ T ≤ `POSELIFT_MAX_FRAMES_PER_REQUEST`; {kp_limit}",
         "`keypoints` (shape, T), `keypoints[t][j]` (a value)"),
        ("`scores`", "`LiftRequest.scores`", f"(T, {NUM_JOINTS}), optional; finite, in [0, 1]",
         "`scores`, `scores[t][j]`"),
        ("`frames`", "one `Frame` per message",
         "1 to `POSELIFT_MAX_FRAMES_PER_REQUEST` and `POSELIFT_POSES_HELD` per batch", "`frames`"),
        ("`frames[i].seq`", "`Frame.seq`", "an integer in [0, 2^63-1], increasing within a batch",
         "`frames[i].seq`"),
        ("`frames[i].keypoints`", "`Frame.keypoints`", f"({NUM_JOINTS}, 2); {kp_limit}",
         "`frames[i].keypoints`, `frames[i].keypoints[j]`"),
        ("`frames[i].scores`", "`Frame.scores`", f"({NUM_JOINTS},), optional; finite, in [0, 1]",
         "`frames[i].scores`, `frames[i].scores[j]`"),
    ]  # fmt: skip
    lines = ["| REST field | gRPC field | limit | error location |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(limits_table())
