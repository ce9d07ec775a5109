"""From a sequence of normalised 2D frames to 3D output: the one path clips, sessions and streams share.

A pose is made in four steps, each a function here, so `Lifter.lift_full` (a whole clip) and the service's
sessions (a few new frames after a stored history) compute exactly the same thing:

1. `causal_inputs` / `offline_inputs`: the model's windows for the frames to lift. A model trained at a fixed
   frame rate (the tcn: 30 fps) sees its windows resampled from the camera's rate (`poselift.windows`), so a
   10 fps or a 120 fps camera gives the model the motion it was trained on.
2. The network's heads for those windows (`poselift.runtimes`), run by the caller (batched, maybe with
   other sessions' windows).
3. `finish`: the pose (the newest frame's; offline, the mean of three estimates: a forward pass, a pass over
   the reversed clip, and the centre-frame head over centred windows), the
   pelvis in the camera frame from the root head and the camera's focal length, the visible fraction of
   each pose's window, and the person's bone lengths (a running, confidence-weighted mean of the model's
   bone lengths) applied to every pose.
4. The caller keeps `history_length` frames and the `BoneState` for the next call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poselift.geometry import root_from_code
from poselift.skeleton import H36M17_PARENTS, NUM_JOINTS
from poselift.windows import sample_windows, window_times

BONES = NUM_JOINTS - 1  # bone j-1 joins joint j to its parent
_CHILD = np.arange(1, NUM_JOINTS)
_PARENT = np.array(H36M17_PARENTS[1:])


def _ancestry() -> np.ndarray:
    """(17, 16) float64: 1 where bone b lies on the path from the pelvis to joint j, so joints = A @ bones."""
    out = np.zeros((NUM_JOINTS, BONES))
    for j in range(1, NUM_JOINTS):
        k = j
        while k > 0:
            out[j, k - 1] = 1.0
            k = H36M17_PARENTS[k]
    return out


_ANCESTRY = _ancestry()


@dataclass(frozen=True)
class BoneState:
    """The running estimate of one person's bone lengths: confidence-weighted sums over the frames so far.

    Attributes:
        length_sum: (16,) float64, Σ weight · length (mm) per bone.
        weight_sum: (16,) float64, Σ weight per bone.
    """

    length_sum: np.ndarray
    weight_sum: np.ndarray

    @classmethod
    def empty(cls) -> BoneState:
        return cls(np.zeros(BONES), np.zeros(BONES))


@dataclass(frozen=True)
class SequenceOutput:
    """What a lifter returns for each frame lifted.

    Attributes:
        poses_mm: (n, 17, 3) float32 root-relative poses, camera frame, mm.
        root_mm: (n, 3) float32 the pelvis in the camera frame (x right, y down, z forward), mm; None for
            a model without a root head.
        visible: (n,) float32 the fraction of the pose's input window (frames × joints) that was seen.
    """

    poses_mm: np.ndarray
    root_mm: np.ndarray | None
    visible: np.ndarray


def frame_step(fps: float, model_fps: float | None) -> float:
    """Input frames per model frame: fps / model_fps, or 1 for a model trained across frame rates."""
    return 1.0 if not model_fps else float(fps) / float(model_fps)


def history_length(window: int, step: float) -> int:
    """Frames before the newest that a causal window reaches back to (what a session keeps)."""
    return max(math.ceil((window - 1) * step - 1e-9), 0)


def causal_inputs(
    history_kp: np.ndarray,
    history_scores: np.ndarray,
    new_kp: np.ndarray,
    new_scores: np.ndarray,
    window: int,
    step: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The causal windows of the new frames: (n, W, 17, 2) keypoints and (n, W, 17) scores.

    Args:
        history_kp, history_scores: (H, 17, 2), (H, 17) the frames before (the newest `history_length`
            are enough; a fresh sequence has none).
        new_kp, new_scores: (n, 17, 2), (n, 17) the frames to lift.
        window: the model's window W; step: `frame_step`.
    """
    kp = np.concatenate([history_kp, new_kp]) if len(history_kp) else new_kp
    sc = np.concatenate([history_scores, new_scores]) if len(history_scores) else new_scores
    ends = np.arange(len(history_kp), len(kp), dtype=np.float64)
    return sample_windows(kp, sc, window_times(ends, window, step))


def offline_inputs(
    kp: np.ndarray, scores: np.ndarray, window: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """The offline mode's windows of a whole clip: causal, causal over the reversed clip, and centred.

    The offline pose of a frame is the mean of three estimates (`finish`): what the causal network makes of
    the frames up to it; of the frames from it on, played backwards (reversed human motion is still human
    motion: a walk becomes a walk backwards); and its centre-frame head's pose for the window centred on
    it (edge-padded past the clip's end). Their errors partly cancel: on val the mean of the three beat
    each one alone and the mean of the first two (docs/results.md).

    Returns:
        (3n, W, 17, 2) keypoints and (3n, W, 17) scores: rows :n forward, n:2n of the reversed clip (in
        reversed order), 2n: centred on each frame.
    """
    forward = causal_inputs(kp[:0], scores[:0], kp, scores, window, step)
    backward = causal_inputs(kp[:0], scores[:0], kp[::-1], scores[::-1], window, step)
    centres = np.arange(len(kp), dtype=np.float64) + (window - 1) // 2 * step
    centred = sample_windows(kp, scores, window_times(centres, window, step))
    return (
        np.concatenate([forward[0], backward[0], centred[0]]),
        np.concatenate([forward[1], backward[1], centred[1]]),
    )


def clip_inputs(
    kp: np.ndarray, scores: np.ndarray, window: int, step: float, offline: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A whole clip's windows: `offline_inputs` (3n rows), or its causal windows from no history (n rows)."""
    if offline:
        return offline_inputs(kp, scores, window, step)
    return causal_inputs(kp[:0], scores[:0], kp, scores, window, step)


def visible_fraction(window_scores: np.ndarray) -> np.ndarray:
    """(n, W, 17) window scores -> (n,) float32 fraction of joints × frames present (score > 0)."""
    present = np.count_nonzero(window_scores > 0, axis=(1, 2))
    return (present / (window_scores.shape[1] * window_scores.shape[2])).astype(np.float32)


def bone_lengths_mm(poses_mm: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> (..., 16) bone lengths, mm (bone j-1: joint j to its parent)."""
    bones = poses_mm[..., _CHILD, :] - poses_mm[..., _PARENT, :]
    return np.sqrt(np.einsum("...c,...c->...", bones, bones))


def _bone_vectors(poses_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 17, 3) poses -> (n, 16, 3) float64 bones (child minus parent) and their (n, 16) lengths, mm."""
    poses = poses_mm.astype(np.float64)
    bones = poses[:, _CHILD] - poses[:, _PARENT]
    return bones, np.sqrt(np.einsum("nbc,nbc->nb", bones, bones))


def _with_lengths(bones: np.ndarray, norm: np.ndarray, lengths_mm: np.ndarray) -> np.ndarray:
    """(n, 17, 3) float32 poses rebuilt from the pelvis out from `_bone_vectors`' output, each bone's length
    set to `lengths_mm` ((n, 16) or (16,); <= 0 keeps its own)."""
    # The pelvis-out sums as one product with the tree's ancestry matrix: the per-joint loop this replaces
    # was most of a streamed frame's numpy time.
    want = np.broadcast_to(lengths_mm, norm.shape)
    scale = np.where((want > 0) & (norm > 1e-6), want / np.maximum(norm, 1e-6), 1.0)
    return (_ANCESTRY @ (bones * scale[..., None])).astype(np.float32)


def apply_bone_lengths(poses_mm: np.ndarray, lengths_mm: np.ndarray) -> np.ndarray:
    """Rebuild (n, 17, 3) poses from the pelvis out with each bone's direction kept and its length set.

    Args:
        poses_mm: (n, 17, 3) root-relative poses.
        lengths_mm: (n, 16) or (16,) lengths; a bone of length <= 0 (no estimate yet) keeps its own.
    """
    return _with_lengths(*_bone_vectors(poses_mm), lengths_mm)


def accumulate_bones(
    state: BoneState, poses_mm: np.ndarray, newest_scores: np.ndarray
) -> tuple[np.ndarray, BoneState]:
    """Add frames' bone lengths to the running estimate, frame by frame; the estimate after each frame.

    A bone's weight in a frame is the smaller confidence of its two joints in that frame's input, so what
    the detector saw well shapes the skeleton and occluded guesses barely do. Sums run in float64 in frame
    order (`np.cumsum`), so any split of a sequence into batches gives the same estimates.

    Args:
        poses_mm: (n, 17, 3) the model's poses; newest_scores: (n, 17) their frames' input scores.

    Returns:
        ((n, 16) mm, the estimate after each frame, 0 where a bone was never seen; the new state).
    """
    return _running_estimate(state, _bone_vectors(poses_mm)[1], newest_scores)


def _running_estimate(
    state: BoneState, lengths_mm: np.ndarray, newest_scores: np.ndarray
) -> tuple[np.ndarray, BoneState]:
    """`accumulate_bones` from the frames' (n, 16) float64 bone lengths."""
    weight = np.minimum(newest_scores[:, _CHILD], newest_scores[:, _PARENT]).astype(np.float64)  # (n, 16)
    if len(lengths_mm) == 1:  # a streamed frame: the cumsum's own sums, without its copies
        sums = (state.length_sum + weight[0] * lengths_mm[0])[None]
        weights = (state.weight_sum + weight[0])[None]
    else:
        sums = np.cumsum(np.concatenate([state.length_sum[None], weight * lengths_mm]), axis=0)[1:]
        weights = np.cumsum(np.concatenate([state.weight_sum[None], weight]), axis=0)[1:]
    estimate = np.where(weights > 0, sums / np.maximum(weights, 1e-12), 0.0)
    return estimate, BoneState(sums[-1].copy(), weights[-1].copy())


def finish(
    heads: np.ndarray,
    window_scores: np.ndarray,
    newest_scores: np.ndarray,
    camera_norm: tuple[float, np.ndarray],
    bones: BoneState | None,
    has_root: bool,
    offline: bool = False,
) -> tuple[SequenceOutput, BoneState | None]:
    """The output of lifted frames from the network's heads.

    Args:
        heads: (n, 2, 18, 3) `poselift.export.WindowHeads` rows of the frames' windows.
        window_scores: (n, W, 17) the windows' scores (for the visible fraction).
        newest_scores: (n, 17) each lifted frame's own input scores (for the bone weights).
        camera_norm: (focal, principal (2,)) in screen-normalised units (`camera_in_normalised_units`).
        bones: the bone state before these frames; None: leave bone lengths as the model made them.
        has_root: whether the model has a root head (else `root_mm` is None).
        offline: the frames are a whole clip lifted in the offline mode: `heads` and `window_scores` hold
            3n rows (`offline_inputs`): forward, reversed, centred; the output is the mean of the first
            two's newest-frame head and the third's centre-frame head, with the bone lengths of the whole
            clip for every frame.

    Returns:
        (the output, the bone state after these frames (None when `bones` is None)).
    """
    if offline:  # forward, backward (back in clip order) and centred estimates
        n = len(heads) // 3
        rows = (heads[:n, 0].astype(np.float64) + heads[n : 2 * n, 0][::-1] + heads[2 * n :, 1]) / 3.0
        window_scores = np.concatenate(
            [window_scores[:n], window_scores[n : 2 * n][::-1], window_scores[2 * n :]], axis=1
        )
    else:
        rows = heads[:, 0]
    poses = np.ascontiguousarray(rows[:, :NUM_JOINTS], dtype=np.float32)
    new_bones = None
    if bones is not None:
        vectors, lengths = _bone_vectors(poses)  # once, for both the estimate and the rebuilt poses
        estimate, new_bones = _running_estimate(bones, lengths, newest_scores)
        poses = _with_lengths(vectors, lengths, estimate[-1:] if offline else estimate)
    root = root_from_code(rows[:, NUM_JOINTS], *camera_norm).astype(np.float32) if has_root else None
    return SequenceOutput(poses, root, visible_fraction(window_scores)), new_bones
