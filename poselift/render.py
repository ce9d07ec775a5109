"""Render a poses file to a video: the 2D input (over the video's frames when given) beside the 3D skeleton.

Left: the h36m17 keypoints in pixels (joints with score <= 0 left out), drawn over the matching video
frame (`frame_index` says which video frame each row is; without it row i is frame i). Right: the 3D skeleton
with the pelvis trajectory, upright: plot x = camera x (right), plot y = camera z (depth), plot z = -camera y
(up), after levelling by the person's median torso direction (`scene_points`). The ground plane passes through
the lowest ankle of the clip. When the trajectory is unknown (all zeros) the skeleton is drawn
root-relative, pelvis at the origin.

Frames are drawn by matplotlib (Agg, one figure whose artists are updated each frame) and written by
imageio: .mp4 through the ffmpeg binary that imageio-ffmpeg ships (H.264, no system ffmpeg needed), .gif
through Pillow.
These come with the `render` extra (`pip install poselift[render]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poselift.poses_file import Poses
from poselift.skeleton import H36M17_LEFT, H36M17_PARENTS, H36M17_RIGHT

FORMATS = (".mp4", ".gif")
ANKLES = (3, 6)
_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "0.15"}


class RenderError(ValueError):
    """The render cannot be made: unknown output type, an unreadable video, too few video frames."""


def _side(joint: int) -> str:
    return "left" if joint in H36M17_LEFT else "right" if joint in H36M17_RIGHT else "centre"


# Bones (parent, child) grouped by side, so each side is one line artist with NaN breaks between bones.
_BONES: dict[str, list[tuple[int, int]]] = {side: [] for side in _COLOURS}
for _child, _parent in enumerate(H36M17_PARENTS):
    if _parent >= 0:
        _BONES[_side(_child)].append((_parent, _child))


def _polyline(points: np.ndarray, bones: list[tuple[int, int]]) -> np.ndarray:
    """(J, D) points -> (3 * len(bones), D) segments separated by NaN rows, for one line artist."""
    out = np.full((3 * len(bones), points.shape[-1]), np.nan)
    for k, (a, b) in enumerate(bones):
        out[3 * k], out[3 * k + 1] = points[a], points[b]
    return out


CAMERA_UP = np.array([0.0, -1.0, 0.0])  # camera frame: y points down
MAX_LEVELLING_DEG = 45.0


def up_direction(poses_mm: np.ndarray) -> np.ndarray:
    """(3,) unit "up" in the camera frame: the person's median torso direction (pelvis -> thorax).

    A camera that looks down or up tilts the floor in its own frame; a standing or walking person's torso is
    close to vertical, so it levels the scene. Where the median torso leans more than 45° from the camera's up
    (someone lying down, say), the camera's up is kept.
    """
    torso = poses_mm[:, 8] - poses_mm[:, 0]
    torso = torso / np.maximum(np.linalg.norm(torso, axis=-1, keepdims=True), 1e-9)
    up = np.median(torso, axis=0)
    if np.linalg.norm(up) < 1e-6:
        return CAMERA_UP
    up = up / np.linalg.norm(up)
    if np.degrees(np.arccos(np.clip(up @ CAMERA_UP, -1.0, 1.0))) > MAX_LEVELLING_DEG:
        return CAMERA_UP
    return up


def _turn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking unit vector a to unit vector b (not opposite)."""
    v, c = np.cross(a, b), float(a @ b)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def scene_points(poses: Poses) -> np.ndarray:
    """(T, 17, 3) joints in the upright plot frame, mm: x right, y depth (away from the camera), z up.

    The camera-frame points are turned by the smallest rotation that takes `up_direction` to the camera's up,
    so the camera's pitch and roll do not tilt the floor.
    """
    absolute = poses.poses_mm - poses.poses_mm[:, :1] + poses.trajectory_mm[:, None]
    levelled = absolute @ _turn(up_direction(poses.poses_mm), CAMERA_UP).T
    return np.stack([levelled[..., 0], levelled[..., 2], -levelled[..., 1]], axis=-1)


def floor_height_mm(points: np.ndarray) -> float:
    """Height (plot z) of the ground plane: the lowest ankle over the clip."""
    return float(np.min(points[:, ANKLES, 2]))


def _video_frames(video: Path, wanted: np.ndarray) -> Iterator[np.ndarray]:
    """The video frames numbered `wanted` (any order), read with imageio's ffmpeg plugin."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(video, format="FFMPEG")
    except Exception as error:  # imageio raises several types for a missing or undecodable file
        raise RenderError(f"{video}: cannot read the video: {error}") from None
    with reader:
        frames: Iterator[Any] = iter(reader.iter_data())
        current, image = -1, None
        for index in wanted:
            if index < current:  # out of order: seek (slow, but correct)
                image, current = reader.get_data(int(index)), int(index)
            while current < index:
                try:
                    image = next(frames)
                except StopIteration:
                    raise RenderError(
                        f"{video}: the poses file refers to frame {index}, the video has {current + 1} frames"
                    ) from None
                current += 1
            assert image is not None
            yield np.asarray(image)[..., :3]


class _Figure:
    """One matplotlib figure (2D and 3D panels) drawn once; each frame redraws only what moves (blitting)."""

    def __init__(self, poses: Poses, width_px: int, height_px: int, with_video: bool) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.poses = poses
        self.points = scene_points(poses)
        dpi = 100
        self.fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)  # drawn off-screen, whatever matplotlib's default backend
        self.fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.02, wspace=0.02)
        self.ax2d = self.fig.add_subplot(1, 2, 1)
        self.ax3d: Any = self.fig.add_subplot(1, 2, 2, projection="3d")
        self.moving: list[Any] = []  # artists that change from frame to frame, drawn over the background
        self._setup_2d(with_video)
        self._setup_3d()
        for artist in self.moving:
            artist.set_animated(True)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)

    def _setup_2d(self, with_video: bool) -> None:
        ax, p = self.ax2d, self.poses
        ax.set_xlim(0, p.width)
        ax.set_ylim(p.height, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("2D input" + (" over the video" if with_video else ""), fontsize=10)
        self.image = None
        if with_video:
            blank = np.zeros((2, 2, 3), dtype=np.uint8)
            self.image = ax.imshow(blank, extent=(0, p.width, p.height, 0), interpolation="bilinear")
            self.moving.append(self.image)
        else:
            ax.set_facecolor("0.93")
        self.lines2d = {
            side: ax.plot([], [], "-o", color=colour, lw=2, ms=3)[0] for side, colour in _COLOURS.items()
        }
        self.label = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=9, color="0.1",
                             bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})  # fmt: skip
        self.moving += [*self.lines2d.values(), self.label]

    def _setup_3d(self) -> None:
        from mpl_toolkits.mplot3d.art3d import Poly3DCollection

        ax, pts = self.ax3d, self.points
        floor = floor_height_mm(pts)
        low, high = pts.reshape(-1, 3).min(axis=0), pts.reshape(-1, 3).max(axis=0)
        centre, half = (low + high) / 2, max(float(np.max(high - low)) / 2, 1000.0) * 1.05
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(floor, floor + 2 * half)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=15, azim=-70)
        ax.set_xlabel("x (mm)", fontsize=7)
        ax.set_ylabel("depth (mm)", fontsize=7)
        ax.set_zlabel("up (mm)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(False)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_pane_color((1.0, 1.0, 1.0, 0.0))
        title = "3D, with the trajectory" if self.poses.has_trajectory else "3D, root-relative"
        ax.set_title(title, fontsize=10)
        # Ground plane through the lowest ankle: a filled square with a grid on it.
        x0, x1, y0, y1 = centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half
        square = [[(x0, y0, floor), (x1, y0, floor), (x1, y1, floor), (x0, y1, floor)]]
        ax.computed_zorder = False  # the floor stays under the path and skeleton, whatever the depth sort
        ax.add_collection3d(Poly3DCollection(square, facecolor="0.88", edgecolor="0.6", lw=0.8, zorder=0))
        ticks = np.linspace(-half, half, 9)
        grid_x, grid_y = np.meshgrid(centre[0] + ticks, centre[1] + ticks)
        ax.plot_wireframe(grid_x, grid_y, np.full_like(grid_x, floor), color="0.7", lw=0.5, zorder=1)
        self.path_done = None
        if self.poses.has_trajectory:  # the whole path dashed, the part walked so far solid
            pelvis = pts[:, 0]
            on_floor = np.full(len(pts), floor)
            ax.plot(pelvis[:, 0], pelvis[:, 1], on_floor, color="0.45", lw=1, ls="--", zorder=2)
            self.path_done = ax.plot([], [], [], color="tab:green", lw=2)[0]
            self.moving.append(self.path_done)
        self.lines3d = {side: ax.plot([], [], [], color=c, lw=2.5)[0] for side, c in _COLOURS.items()}
        self.moving += list(self.lines3d.values())
        self.floor = floor

    def draw(self, row: int, video_frame: np.ndarray | None) -> np.ndarray:
        """(H, W, 3) uint8 picture of one row of the poses file."""
        p = self.poses
        if self.image is not None and video_frame is not None:
            self.image.set_data(video_frame)
        keypoints = np.where(p.scores[row, :, None] > 0, p.keypoints_px[row], np.nan)
        for side, bones in _BONES.items():
            xy = _polyline(keypoints, bones)
            self.lines2d[side].set_data(xy[:, 0], xy[:, 1])
            xyz = _polyline(self.points[row], bones)
            self.lines3d[side].set_data_3d(xyz[:, 0], xyz[:, 1], xyz[:, 2])
        if self.path_done is not None:
            done = self.points[: row + 1, 0]
            self.path_done.set_data_3d(done[:, 0], done[:, 1], np.full(len(done), self.floor))
        frame = "" if p.frame_index is None else f", video frame {p.frame_index[row]}"
        self.label.set_text(f"row {row}{frame}, t = {row / p.fps:.2f} s, visible {p.visible[row]:.2f}")
        self.canvas.restore_region(self.background)
        for artist in self.moving:
            self.fig.draw_artist(artist)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()


def render(
    poses: Poses,
    out_path: str | Path,
    video_path: str | Path | None = None,
    width_px: int | None = None,
) -> int:
    """Draw every row of `poses` into `out_path` (.mp4 or .gif) at the clip's fps; returns the frame count.

    Args:
        poses: the clip (`poselift.poses_file.load_poses_file`).
        out_path: .mp4 (H.264 through imageio-ffmpeg's own ffmpeg) or .gif (Pillow).
        video_path: the clip's video; its frames are drawn under the 2D keypoints.
        width_px: picture width (height is half of it); default 1280 for mp4, 640 for gif. Rounded to a
            multiple of 32 so both sides suit H.264's 16-pixel blocks.

    Raises:
        RenderError: an unknown output type, a video that cannot be read or has too few frames.
        OSError: the output cannot be written.
    """
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in FORMATS:
        raise RenderError(f"{out_path}: unknown output type {suffix or '(none)'!r}; expected .mp4 or .gif")
    if video_path is not None and not Path(video_path).is_file():
        raise RenderError(f"{video_path}: no such video file")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(out_path.parent))
    width = max(320, round((width_px or (1280 if suffix == ".mp4" else 640)) / 32) * 32)
    figure = _Figure(poses, width, width // 2, video_path is not None)
    rows = range(poses.num_frames)
    wanted = np.arange(poses.num_frames) if poses.frame_index is None else poses.frame_index
    frames: Iterator[np.ndarray | None] = (
        _video_frames(Path(video_path), wanted) if video_path is not None else iter([None] * len(rows))
    )
    pictures = (figure.draw(row, frame) for row, frame in zip(rows, frames, strict=True))
    if suffix == ".mp4":
        return _write_mp4(out_path, pictures, poses.fps)
    return _write_gif(out_path, pictures, poses.fps)


def _write_mp4(path: Path, pictures: Iterator[np.ndarray], fps: float) -> int:
    import imageio.v2 as imageio

    count = 0
    writer: Any = imageio.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        quality=7,
        pixelformat="yuv420p",  # what every player decodes
        macro_block_size=16,
        ffmpeg_params=["-preset", "veryfast"],  # flat drawings compress well without the slower searches
    )
    with writer:
        for picture in pictures:
            writer.append_data(picture)
            count += 1
    return count


def _write_gif(path: Path, pictures: Iterator[np.ndarray], fps: float) -> int:
    from PIL import Image

    # Pillow keeps every frame until it writes; palette images are a byte a pixel.
    frames = [Image.fromarray(p).quantize(colors=128, method=Image.Quantize.MEDIANCUT) for p in pictures]
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0, optimize=False
    )
    return len(frames)
