"""2D corruption that looks like a real keypoint detector's, for training and for the `detector` evaluation.

What detectors get wrong, from published analyses (docs/training.md, "2D corruption, tcn"):

- Error is mostly low-frequency, not white: per-joint offsets that drift over frames (SmoothNet, Zeng et al.,
  ICCV 2021: HRNet, CPN and Hourglass on Human3.6M have mean 2D errors of 4.6–9.4 px with accelerations of
  only 1–3 px/frame²). Here: a first-order autoregressive offset per joint and axis with a correlation time
  of 3–25 frames, plus a little white jitter.
- The spread differs per joint in proportion to the COCO keypoint sigmas (Ronchi & Perona, ICCV 2017; the
  COCO OKS constants): hips, knees and ankles loosest, eyes and nose tightest.
- Structured mistakes (PoseFix, Moon et al., CVPR 2019: "jitter", "inversion", "swap" and "miss" errors, a
  few percent of keypoints): a limb's left and right joints exchanged for a stretch of frames, a joint
  snapped onto a nearby person for a stretch of frames.
- Occlusion: joints missing for runs of frames, and now and then whole frames without a detection.
- Confidences that are lower where the error is larger.

Everything is in pixels and scales with the person's size in the image, so the same model holds for any
resolution. `DetectorNoise` holds the ranges; `corrupt_like_detector` applies them to a batch of windows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from poselift.skeleton import NUM_JOINTS

# COCO keypoint sigmas (OKS), mapped to h36m17: pelvis/spine/thorax are made from hips and shoulders, the
# neck point from the eyes and the head top from the ears (poselift.skeleton.to_h36m17).
COCO_SIGMA_H36M17 = np.array(
    [
        0.107,  # pelvis (mid-hips)
        0.107,  # right_hip
        0.087,  # right_knee
        0.089,  # right_ankle
        0.107,  # left_hip
        0.087,  # left_knee
        0.089,  # left_ankle
        0.093,  # spine (between hips and shoulders)
        0.079,  # thorax (mid-shoulders)
        0.025,  # neck (between the eyes)
        0.035,  # head top (from the ears)
        0.079,  # left_shoulder
        0.072,  # left_elbow
        0.062,  # left_wrist
        0.079,  # right_shoulder
        0.072,  # right_elbow
        0.062,  # right_wrist
    ]
)
# Limbs whose left and right joints a detector may exchange: (left joints, right joints).
LIMB_PAIRS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((5, 6), (2, 3)),  # knee + ankle
    ((6,), (3,)),  # ankle
    ((12, 13), (15, 16)),  # elbow + wrist
    ((13,), (16,)),  # wrist
    ((4, 5, 6), (1, 2, 3)),  # the whole leg
)
# Joints that go missing most: the limb ends and the head.
OCCLUSION_WEIGHT = np.array([0.5, 1, 2, 3, 1, 2, 3, 0.5, 0.5, 1, 1.5, 1, 2, 3, 1, 2, 3], dtype=np.float64)


@dataclass(frozen=True)
class DetectorNoise:
    """Ranges of the detector-like corruption (recorded in every checkpoint trained with it).

    Sizes are fractions of the person's 2D size (the larger side of their bounding box over the window).
    """

    # Mean joint error, drawn per window: SmoothNet's 4.6-9.4 px on Human3.6M people ~400-500 px tall is
    # 1-2 % of their size; up to 3 % covers smaller people and weaker detectors.
    error_frac: tuple[float, float] = (0.003, 0.03)
    correlation_frames: tuple[float, float] = (3.0, 25.0)  # drift correlation time
    white_frac: float = 0.15  # white jitter σ, fraction of the drift σ
    inversion_prob: float = 0.15  # windows with a left/right limb inversion
    swap_prob: float = 0.1  # windows where a joint lands on a nearby person for a while
    swap_frac: tuple[float, float] = (0.2, 0.8)  # how far away that person's joint is
    stretch_frames: tuple[int, int] = (2, 30)  # length of an inversion or swap
    occlusion_prob: float = 0.25  # windows with occluded joints
    occluded_joints: tuple[int, int] = (1, 4)
    occlusion_frames: tuple[int, int] = (3, 60)
    missing_frame_prob: float = 0.15  # windows with runs of frames without a detection
    missing_frames: tuple[int, int] = (1, 6)
    score_base: tuple[float, float] = (0.75, 1.0)  # confidence of a joint with no error
    score_per_sigma: float = 0.12  # confidence lost per σ-unit of the joint's actual error

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _chance(rng: np.random.Generator, count: int, probability: float) -> np.ndarray:
    """(count,) bool, each true with `probability`."""
    return np.asarray(rng.random(count) < probability)


def _runs(rng: np.random.Generator, mask: np.ndarray, frames: int, length: tuple[int, int]) -> np.ndarray:
    """A (N, T) mask true over one random run of frames per row where `mask` (N,) is set."""
    n = len(mask)
    run = rng.integers(length[0], length[1] + 1, n)
    start = rng.integers(-length[1] // 2, frames, n)
    t = np.arange(frames)[None, :]
    return mask[:, None] & (t >= start[:, None]) & (t < (start + run)[:, None])


def corrupt_like_detector(
    keypoints_px: np.ndarray, size_px: np.ndarray, rng: np.random.Generator, noise: DetectorNoise
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt clean 2D keypoints the way a detector does.

    Args:
        keypoints_px: (B, T, J, 2) clean projections, pixels, oldest frame first.
        size_px: (B,) the person's 2D size in each window, pixels.
        rng: the random generator (seeded by the caller for a reproducible evaluation).
        noise: the ranges.

    Returns:
        (keypoints_px (B, T, J, 2), scores (B, T, J) in [0, 1], 0 = missing), float64.
    """
    batch, frames = keypoints_px.shape[:2]
    rel_sigma = COCO_SIGMA_H36M17 / COCO_SIGMA_H36M17.mean()  # (J,), mean 1
    level = rng.uniform(*noise.error_frac, batch) * size_px  # (B,) mean error, px
    # Mean 2D error of an isotropic Gaussian with per-axis σ is σ·sqrt(π/2).
    sigma = (level / np.sqrt(np.pi / 2))[:, None] * rel_sigma[None, :]  # (B, J) per-axis σ, px

    # Drift: AR(1) per joint and axis, stationary with σ, correlation time τ frames.
    tau = rng.uniform(*noise.correlation_frames, batch)
    rho = np.exp(-1.0 / tau)[:, None, None]  # (B, 1, 1)
    innovation = np.sqrt(1.0 - rho**2)
    drift = np.empty_like(keypoints_px)
    state = rng.standard_normal((batch, NUM_JOINTS, 2))
    for frame in range(frames):
        state = rho * state + innovation * rng.standard_normal((batch, NUM_JOINTS, 2))
        drift[:, frame] = state
    error = drift * sigma[:, None, :, None]
    error += noise.white_frac * sigma[:, None, :, None] * rng.standard_normal(keypoints_px.shape)
    kp = keypoints_px + error

    # Left/right inversion of one limb for a stretch of frames.
    which = rng.integers(0, len(LIMB_PAIRS), batch)
    stretch = _runs(rng, _chance(rng, batch, noise.inversion_prob), frames, noise.stretch_frames)
    for pair_idx, (left, right) in enumerate(LIMB_PAIRS):
        rows = stretch & (which == pair_idx)[:, None]  # (B, T)
        if not rows.any():
            continue
        bi, ti = np.nonzero(rows)
        swapped = kp[bi, ti][:, list(right) + list(left)]
        kp[bi[:, None], ti[:, None], list(left) + list(right)] = swapped

    # A joint snapped onto a nearby person's for a stretch of frames.
    swap_joint = np.asarray(rng.integers(0, NUM_JOINTS, batch))
    swap_rows = _runs(rng, _chance(rng, batch, noise.swap_prob), frames, noise.stretch_frames)
    direction = rng.standard_normal((batch, 2))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    offset = direction * (rng.uniform(*noise.swap_frac, batch) * size_px)[:, None]  # (B, 2)
    bs, ts = np.nonzero(swap_rows)
    kp[bs, ts, swap_joint[bs]] += offset[bs]

    # Confidence falls with the joint's actual error (in units of its σ); gross mistakes score low.
    err_sigmas = np.linalg.norm(kp - keypoints_px, axis=-1) / np.maximum(sigma[:, None, :], 1e-6)
    base = rng.uniform(*noise.score_base, (batch, 1, 1))
    scores = base - noise.score_per_sigma * err_sigmas + 0.05 * rng.standard_normal(err_sigmas.shape)
    scores = np.clip(scores, 0.05, 1.0)

    # Occlusion: a few joints (limb ends most) missing for runs of frames; whole frames missing.
    occluded = _chance(rng, batch, noise.occlusion_prob)
    count = rng.integers(noise.occluded_joints[0], noise.occluded_joints[1] + 1, batch)
    p = OCCLUSION_WEIGHT / OCCLUSION_WEIGHT.sum()
    for k in range(noise.occluded_joints[1]):
        joint = np.asarray(rng.choice(NUM_JOINTS, size=batch, p=p))
        rows = _runs(rng, occluded & (count > k), frames, noise.occlusion_frames)
        bo, to = np.nonzero(rows)
        scores[bo, to, joint[bo]] = 0.0
    frame_gone = _runs(rng, _chance(rng, batch, noise.missing_frame_prob), frames, noise.missing_frames)
    scores[frame_gone] = 0.0
    return kp, scores
