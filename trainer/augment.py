"""Training windows: mocap seen through freshly sampled virtual cameras, with detector-like corruption.

Every window gets its own camera (azimuth all around the person, elevation, distance, field of view, image
size, principal point), its own frame rate (temporal stride for 25–60 fps input), an optional mirror image,
bone-length and body-scale variation, Gaussian pixel noise, occasional outlier joints and dropped joints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from poselift.geometry import (
    look_at_rotation,
    mask_missing,
    normalize_screen_coordinates,
    project_to_2d,
    root_relative,
    world_to_camera,
)
from poselift.skeleton import H36M17_PARENTS, NUM_JOINTS, flip_permutation
from trainer.corruption import DetectorNoise, corrupt_like_detector
from trainer.mocap import Mocap


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the virtual cameras and corruptions (recorded in every checkpoint)."""

    fps_range: tuple[float, float] = (25.0, 60.0)
    elevation_deg: tuple[float, float] = (-10.0, 45.0)
    distance_mm: tuple[float, float] = (2500.0, 9000.0)
    hfov_deg: tuple[float, float] = (35.0, 90.0)
    image_width_px: tuple[int, int] = (480, 1920)
    aspects: tuple[float, ...] = (16 / 9, 4 / 3, 1.0, 9 / 16)
    principal_jitter: float = 0.05  # fraction of the image size
    off_centre: float = 0.5  # how far from the image centre the person may be, fraction of half the view
    flip_prob: float = 0.5
    body_scale: tuple[float, float] = (0.9, 1.1)
    bone_scale_std: float = 0.04
    clean_prob: float = 0.25  # windows without pixel noise
    noise_frac_max: float = 0.06  # Gaussian σ up to this fraction of the 2D person size
    outlier_prob: float = 0.01  # per joint and frame
    outlier_frac: float = 0.3  # outlier displacement σ, fraction of the 2D person size
    drop_window_prob: float = 0.4  # windows that lose joints
    drop_rate_max: float = 0.2  # fraction of joints lost in such a window
    score_range: tuple[float, float] = (0.3, 1.0)  # confidences of present joints

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


NO_AUGMENT = AugmentConfig(
    flip_prob=0.0,
    body_scale=(1.0, 1.0),
    bone_scale_std=0.0,
    clean_prob=1.0,
    outlier_prob=0.0,
    drop_window_prob=0.0,
    score_range=(1.0, 1.0),
)


def scale_bones(poses_mm: np.ndarray, bone_scale: np.ndarray) -> np.ndarray:
    """Rescale each bone of (B, T, J, 3) poses by (B, J) factors (bone j = joint j to its parent)."""
    rel = root_relative(poses_mm)
    out = np.zeros_like(rel)
    for j in range(1, NUM_JOINTS):  # parents come before children in the h36m17 order
        p = H36M17_PARENTS[j]
        out[:, :, j] = out[:, :, p] + (rel[:, :, j] - rel[:, :, p]) * bone_scale[:, None, j, None]
    return out + poses_mm[:, :, :1]


class WindowSampler:
    """Draws batches of (2D input, 3D target) training windows from a mocap split."""

    def __init__(self, data: Mocap, window: int, augment: AugmentConfig, rng: np.random.Generator) -> None:
        self.data = data
        self.window = window
        self.aug = augment
        self.rng = rng
        self._weights = data.clip_lengths / data.clip_lengths.sum()
        self._flip = flip_permutation()

    def _clip_windows(self, batch: int) -> np.ndarray:
        """(B, W, J, 3) world poses at a random frame rate, linearly interpolated between mocap frames."""
        rng, d = self.rng, self.data
        seg = rng.choice(len(d.clip_lengths), size=batch, p=self._weights)
        stride = d.fps / rng.uniform(*self.aug.fps_range, size=batch)  # source frames per output frame
        span = stride * (self.window - 1)
        length = d.clip_lengths[seg]
        t0 = rng.uniform(0.0, 1.0, size=batch) * np.maximum(length - 1 - span, 0.0)
        times = np.minimum(t0[:, None] + stride[:, None] * np.arange(self.window), length[:, None] - 1)
        i0 = np.floor(times).astype(np.int64)
        frac = (times - i0)[..., None, None]
        i1 = np.minimum(i0 + 1, length[:, None] - 1)
        base = d.clip_starts[seg][:, None]
        pos = d.positions_mm.astype(np.float64)
        return pos[base + i0] * (1 - frac) + pos[base + i1] * frac

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """A batch of windows.

        Returns:
            keypoints_norm (B, W, 17, 2) float32, scores (B, W, 17) float32,
            target_mm (B, W, 17, 3) float32 root-relative camera-frame poses.
        """
        rng, aug = self.rng, self.aug
        world = self._clip_windows(batch)  # (B, W, J, 3)

        flip = rng.random(batch) < aug.flip_prob
        world[flip, ..., 0] *= -1.0  # mirror the scene, then swap left and right
        world[flip] = world[flip][:, :, self._flip]
        bone = rng.uniform(*aug.body_scale, size=(batch, 1)) * (
            1.0 + aug.bone_scale_std * rng.standard_normal((batch, NUM_JOINTS))
        )
        world = scale_bones(world, bone)

        # One static camera per window, looking near the person.
        centre = world[:, :, 0].mean(axis=1)  # (B, 3)
        az = rng.uniform(0, 2 * np.pi, batch)
        el = np.deg2rad(rng.uniform(*aug.elevation_deg, batch))
        dist = rng.uniform(*aug.distance_mm, batch)
        direction = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        cam_pos = centre + dist[:, None] * direction
        hfov = np.deg2rad(rng.uniform(*aug.hfov_deg, batch))
        half_view_mm = dist * np.tan(hfov / 2)
        target = centre + aug.off_centre * half_view_mm[:, None] * rng.uniform(-1, 1, (batch, 3)) * [
            1,
            1,
            0.5,
        ]
        rot = look_at_rotation(cam_pos, target)  # (B, 3, 3)
        cam = world_to_camera(world, rot[:, None, None], cam_pos[:, None, None])  # (B, W, J, 3)

        width = rng.integers(aug.image_width_px[0], aug.image_width_px[1] + 1, batch).astype(np.float64)
        height = np.round(width / rng.choice(np.array(aug.aspects), batch))
        focal = width / 2 / np.tan(hfov / 2)
        principal = np.stack([width, height], -1) * (
            0.5 + aug.principal_jitter * rng.uniform(-1, 1, (batch, 2))
        )
        kp = project_to_2d(cam, focal[:, None, None], principal[:, None, None])  # (B, W, J, 2)

        size_px = (kp.max(axis=2) - kp.min(axis=2)).max(axis=(1, 2))  # (B,) person extent in pixels
        sigma = np.where(rng.random(batch) < aug.clean_prob, 0.0, rng.uniform(0, aug.noise_frac_max, batch))
        kp = kp + (sigma * size_px)[:, None, None, None] * rng.standard_normal(kp.shape)
        outlier = rng.random(kp.shape[:-1]) < aug.outlier_prob
        kp = kp + outlier[..., None] * (aug.outlier_frac * size_px)[
            :, None, None, None
        ] * rng.standard_normal(kp.shape)

        scores = rng.uniform(*aug.score_range, size=kp.shape[:-1])
        drop_rate = np.where(
            rng.random(batch) < aug.drop_window_prob, rng.uniform(0, aug.drop_rate_max, batch), 0
        )
        scores[rng.random(kp.shape[:-1]) < drop_rate[:, None, None]] = 0.0

        norm = normalize_screen_coordinates(kp, width[:, None, None], height[:, None, None])
        return {
            "keypoints_norm": mask_missing(norm, scores),
            "scores": scores.astype(np.float32),
            "target_mm": root_relative(cam).astype(np.float32),
        }


@dataclass(frozen=True)
class CausalAugmentConfig(AugmentConfig):
    """The tcn's training windows: `AugmentConfig`'s cameras, plus how 2D input is corrupted per window.

    Every window ends at a frame drawn uniformly over its clip, padded before the clip's first frame by
    repeating it, exactly as `poselift.windows` pads at inference, so the first second of a stream is trained
    for. Each window's 2D is clean, white-noised (`AugmentConfig`'s Gaussian model) or corrupted like a
    detector (`trainer.corruption`), and sometimes seen at a lower frame rate and resampled to the model's.
    """

    fps_range: tuple[float, float] = (24.0, 37.5)  # motion speed ±25 % around the model's 30 fps
    clean_prob: float = 0.3
    white_prob: float = 0.3  # the rest (0.4) are detector-like
    noise_frac_max: float = 0.04
    low_fps_prob: float = 0.1  # windows seen at 15 or 10 fps and linearly resampled to the model's rate
    min_depth_mm: float = 1500.0  # the camera stays at least this far from the pelvis over the window
    detector: DetectorNoise = field(default_factory=DetectorNoise)


class CausalWindowSampler:
    """Windows for the tcn: 2D input, the newest and centre frames' 3D poses, and the pelvis in the camera.

    `sources` are (mocap, share of windows) pairs: each window comes from a source drawn by share, then from
    a clip drawn by length within it. A source's `joint_exact` (False for joints the data only estimates)
    becomes a per-joint loss weight of 0.
    """

    def __init__(
        self,
        sources: list[tuple[Mocap, float]],
        window: int,
        augment: CausalAugmentConfig,
        rng: np.random.Generator,
    ) -> None:
        self.sources = sources
        self.window = window
        self.aug = augment
        self.rng = rng
        shares = np.array([s for _, s in sources], dtype=np.float64)
        self._source_p = shares / shares.sum()
        self._flip = flip_permutation()

    def _clip_windows(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, W, J, 3) world poses ending at a uniformly drawn frame, and (B, J) joint loss weights."""
        rng = self.rng
        source = rng.choice(len(self.sources), size=batch, p=self._source_p)
        world = np.empty((batch, self.window, NUM_JOINTS, 3))
        weight = np.ones((batch, NUM_JOINTS), dtype=np.float32)
        speed = rng.uniform(*self.aug.fps_range, size=batch)
        for s, (data, _) in enumerate(self.sources):
            rows = np.nonzero(source == s)[0]
            if len(rows) == 0:
                continue
            seg = rng.choice(
                len(data.clip_lengths), size=len(rows), p=data.clip_lengths / data.clip_lengths.sum()
            )
            length = data.clip_lengths[seg]
            stride = data.fps / speed[rows]  # source frames per model frame
            end = rng.uniform(0.0, 1.0, len(rows)) * (length - 1)
            times = end[:, None] - stride[:, None] * np.arange(self.window - 1, -1, -1)[None, :]
            times = np.clip(times, 0.0, (length - 1)[:, None])  # edge padding before the first frame
            i0 = np.floor(times).astype(np.int64)
            frac = (times - i0)[..., None, None]
            i1 = np.minimum(i0 + 1, (length - 1)[:, None])
            base = data.clip_starts[seg][:, None]
            pos = data.positions_mm
            world[rows] = pos[base + i0] * (1 - frac) + pos[base + i1] * frac
            weight[rows] = data.joint_exact.astype(np.float32)
        return world, weight

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """A batch of windows.

        Returns:
            keypoints_norm (B, W, 17, 2) and scores (B, W, 17) float32, the model's input;
            target_mm (B, 2, 17, 3) root-relative camera-frame poses of the newest and the centre frame;
            root_mm (B, 2, 3) the pelvis of those frames in the camera frame; focal_norm (B,) and
            principal_norm (B, 2) the camera in screen-normalised units; joint_weight (B, 17).
        """
        rng, aug = self.rng, self.aug
        world, joint_weight = self._clip_windows(batch)

        flip = rng.random(batch) < aug.flip_prob
        world[flip, ..., 0] *= -1.0
        world[flip] = world[flip][:, :, self._flip]
        joint_weight[flip] = joint_weight[flip][:, self._flip]
        bone = rng.uniform(*aug.body_scale, size=(batch, 1)) * (
            1.0 + aug.bone_scale_std * rng.standard_normal((batch, NUM_JOINTS))
        )
        world = scale_bones(world, bone)

        centre = world[:, :, 0].mean(axis=1)  # (B, 3)
        travel = np.linalg.norm(world[:, :, 0] - centre[:, None], axis=-1).max(axis=1)  # (B,)
        az = rng.uniform(0, 2 * np.pi, batch)
        el = np.deg2rad(rng.uniform(*aug.elevation_deg, batch))
        dist = np.maximum(rng.uniform(*aug.distance_mm, batch), travel + aug.min_depth_mm)
        direction = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        cam_pos = centre + dist[:, None] * direction
        hfov = np.deg2rad(rng.uniform(*aug.hfov_deg, batch))
        half_view_mm = dist * np.tan(hfov / 2)
        target = centre + aug.off_centre * half_view_mm[:, None] * rng.uniform(-1, 1, (batch, 3)) * [
            1,
            1,
            0.5,
        ]
        rot = look_at_rotation(cam_pos, target)
        cam = world_to_camera(world, rot[:, None, None], cam_pos[:, None, None])  # (B, W, J, 3)

        width = rng.integers(aug.image_width_px[0], aug.image_width_px[1] + 1, batch).astype(np.float64)
        height = np.round(width / rng.choice(np.array(aug.aspects), batch))
        focal = width / 2 / np.tan(hfov / 2)
        principal = np.stack([width, height], -1) * (
            0.5 + aug.principal_jitter * rng.uniform(-1, 1, (batch, 2))
        )
        kp = project_to_2d(cam, focal[:, None, None], principal[:, None, None])  # (B, W, J, 2)
        size_px = (kp.max(axis=2) - kp.min(axis=2)).max(axis=(1, 2))

        kind = rng.random(batch)
        white = (kind >= aug.clean_prob) & (kind < aug.clean_prob + aug.white_prob)
        detector = kind >= aug.clean_prob + aug.white_prob
        scores = np.ones(kp.shape[:-1])
        if white.any():
            sigma = rng.uniform(0, aug.noise_frac_max, white.sum()) * size_px[white]
            noisy = kp[white] + sigma[:, None, None, None] * rng.standard_normal(kp[white].shape)
            outlier = rng.random(noisy.shape[:-1]) < aug.outlier_prob
            noisy += (
                outlier[..., None]
                * (aug.outlier_frac * size_px[white])[:, None, None, None]
                * (rng.standard_normal(noisy.shape))
            )
            kp[white] = noisy
            sc = rng.uniform(*aug.score_range, size=noisy.shape[:-1])
            drop = np.where(
                rng.random(len(sc)) < aug.drop_window_prob, rng.uniform(0, aug.drop_rate_max, len(sc)), 0
            )
            sc[rng.random(sc.shape) < drop[:, None, None]] = 0.0
            scores[white] = sc
        if detector.any():
            kp[detector], scores[detector] = corrupt_like_detector(
                kp[detector], size_px[detector], rng, aug.detector
            )

        low = rng.random(batch) < aug.low_fps_prob
        if low.any():
            step = rng.choice(np.array([2, 3]), size=low.sum())
            for s in (2, 3):
                rows = np.nonzero(low)[0][step == s]
                if len(rows):
                    kp[rows], scores[rows] = resample_low_fps(kp[rows], scores[rows], s)

        norm = normalize_screen_coordinates(kp, width[:, None, None], height[:, None, None])
        mid = (self.window - 1) // 2
        frames = [-1, -1 - mid] if self.window > 1 else [-1, -1]
        root = cam[:, frames, 0]  # (B, 2, 3)
        rel = root_relative(cam[:, frames])
        principal_norm = normalize_screen_coordinates(principal, width, height)
        return {
            "keypoints_norm": mask_missing(norm, scores).astype(np.float32),
            "scores": scores.astype(np.float32),
            "target_mm": rel.astype(np.float32),
            "root_mm": root.astype(np.float32),
            "focal_norm": (focal * 2 / width).astype(np.float32),
            "principal_norm": principal_norm.astype(np.float32),
            "joint_weight": joint_weight,
        }


def resample_low_fps(kp: np.ndarray, scores: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep every `step`-th frame counted back from the newest and linearly interpolate the frames between.

    What a camera at 1/step of the model's rate looks like after `poselift.windows` resamples it. A joint
    is present in an in-between frame when it is present in both neighbours.

    Args:
        kp: (B, T, J, 2); scores: (B, T, J).
    """
    frames = kp.shape[1]
    t = np.arange(frames)
    phase = (frames - 1) % step
    kept = t[(t - phase) % step == 0]
    left = np.clip(np.searchsorted(kept, t, side="right") - 1, 0, len(kept) - 1)
    right = np.clip(left + 1, 0, len(kept) - 1)
    a, b = kept[left], kept[right]
    w = np.where(b > a, (t - a) / np.maximum(b - a, 1), 0.0)
    w = np.where(t < a, 0.0, w)
    out = kp[:, a] * (1 - w)[None, :, None, None] + kp[:, b] * w[None, :, None, None]
    sc = np.where((w == 0)[None, :, None], scores[:, a], np.minimum(scores[:, a], scores[:, b]))
    present = (scores[:, a] > 0) & ((w == 0)[None, :, None] | (scores[:, b] > 0))
    return out, np.where(present, sc, 0.0)
