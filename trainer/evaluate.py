"""Evaluation on the fixed rig (`poselift evaluate`): per method, condition and action, P1, P2 and MPJVE; the
skeleton's consistency (bone-length variation over time, left/right asymmetry); the pelvis trajectory
(position and depth error, with the rig's focal length given and with the default one)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poselift.lifter import Lifter
from poselift.metrics import bone_length_cv, limb_asymmetry, mpjpe, mpjve, p_mpjpe, per_joint_error
from poselift.skeleton import H36M17_JOINTS
from poselift.windows import causal_windows
from trainer.mocap import Mocap
from trainer.rig import FOCAL_PX, HEIGHT_PX, WIDTH_PX, corrupt, corrupt_like_detector_view, rig_views

DETECTOR = "detector"  # the condition of trainer.corruption's detector-like 2D, with its confidences
# (name, Gaussian σ in px, fraction of joints dropped); the detector condition ignores the numbers.
CONDITIONS: tuple[tuple[str, float, float], ...] = (
    ("σ=0", 0.0, 0.0),
    ("σ=5", 5.0, 0.0),
    ("σ=10", 10.0, 0.0),
    ("σ=15", 15.0, 0.0),
    ("σ=20", 20.0, 0.0),
    ("drop10%", 0.0, 0.1),
    ("σ=10+drop10%", 10.0, 0.1),
    (DETECTOR, 0.0, 0.0),
)
OFFLINE = " (offline)"  # suffix of a method lifted in the offline mode
FILTER_WINDOW = 5

PoseFilter = Callable[[np.ndarray], np.ndarray]


def causal_filter(reduce: Callable[..., np.ndarray]) -> PoseFilter:
    """A causal 5-frame filter over (T, J, 3) poses: pose t = reduce of poses t-4 … t (edge-padded)."""

    def apply(poses_mm: np.ndarray) -> np.ndarray:
        return reduce(causal_windows(poses_mm, FILTER_WINDOW), axis=1)

    return apply


FILTERS: dict[str, PoseFilter] = {"median5": causal_filter(np.median), "mean5": causal_filter(np.mean)}


@dataclass
class _Acc:
    """Frame-weighted sums of the metrics of one (method, condition[, action])."""

    frames: int = 0
    p1: float = 0.0
    p2: float = 0.0
    vel_frames: int = 0
    mpjve: float = 0.0
    views: int = 0
    bone_cv: float = 0.0
    asymmetry: float = 0.0
    root_frames: int = 0
    root_err: float = 0.0
    depth_err: float = 0.0
    root_err_default: float = 0.0
    depth_err_default: float = 0.0

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        n = len(pred)
        self.frames += n
        self.p1 += mpjpe(pred, target) * n
        self.p2 += p_mpjpe(pred, target) * n
        if n > 1:
            self.vel_frames += n - 1
            self.mpjve += mpjve(pred, target) * (n - 1)
            self.views += 1
            self.bone_cv += bone_length_cv(pred)
            self.asymmetry += limb_asymmetry(pred)

    def add_root(self, pred: np.ndarray, pred_default: np.ndarray, target: np.ndarray) -> None:
        """Pelvis positions (T, 3) mm: with the rig's focal length given, with the default, and the truth."""
        self.root_frames += len(target)
        self.root_err += float(np.linalg.norm(pred - target, axis=-1).sum())
        self.depth_err += float(np.abs(pred[:, 2] - target[:, 2]).sum())
        self.root_err_default += float(np.linalg.norm(pred_default - target, axis=-1).sum())
        self.depth_err_default += float(np.abs(pred_default[:, 2] - target[:, 2]).sum())

    def result(self) -> dict[str, float]:
        out = {
            "P1_mm": round(self.p1 / max(self.frames, 1), 2),
            "P2_mm": round(self.p2 / max(self.frames, 1), 2),
            "MPJVE_mm_per_frame": round(self.mpjve / max(self.vel_frames, 1), 3),
            "bone_cv_pct": round(100 * self.bone_cv / max(self.views, 1), 2),
            "lr_asymmetry_pct": round(100 * self.asymmetry / max(self.views, 1), 2),
            "frames": self.frames,
        }
        if self.root_frames:
            n = self.root_frames
            out |= {
                "root_error_mm": round(self.root_err / n, 1),
                "depth_error_mm": round(self.depth_err / n, 1),
                "root_error_default_focal_mm": round(self.root_err_default / n, 1),
                "depth_error_default_focal_mm": round(self.depth_err_default / n, 1),
            }
        return out


def evaluate_lifters(
    lifters: dict[str, Lifter],
    data: Mocap,
    conditions: Sequence[tuple[str, float, float]] = CONDITIONS,
    seed: int = 0,
    fps: float = 30.0,
    extras: bool = True,
) -> dict[str, object]:
    """Score every lifter (and frame-wise ones also with causal median/mean filters) on the rig.

    With `extras` (the default; training's validation turns them off for speed) a lifter with an offline
    head is also scored in the offline mode, as "<name> (offline)", and one with a root head on its pelvis.

    Returns:
        {"overall": {method: {condition: metrics}}, "per_action": {method: {condition: {action: metrics}}},
         "per_joint_mm": {method: {condition: [17 floats]}}}.
    """
    views = list(rig_views(data))
    overall: dict[str, dict[str, _Acc]] = defaultdict(lambda: defaultdict(_Acc))
    per_action: dict[str, dict[str, dict[str, _Acc]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(_Acc))
    )
    joint_sum: dict[str, dict[str, np.ndarray]] = defaultdict(lambda: defaultdict(lambda: np.zeros(17)))
    for cond, sigma, drop in conditions:
        rng = np.random.default_rng(seed)  # the same corrupted input for every method
        if cond == DETECTOR:
            inputs = [(v, *corrupt_like_detector_view(v.keypoints_px, rng)) for v in views]
        else:
            inputs = [(v, *corrupt(v.keypoints_px, sigma, drop, rng)) for v in views]
        for name, lifter in lifters.items():
            offline = extras and lifter.offline_capable
            modes = {name: "causal"} | ({name + OFFLINE: "offline"} if offline else {})
            for lifted_name, mode in modes.items():
                methods: dict[str, PoseFilter | None] = {lifted_name: None}
                if lifter.window == 1:
                    methods.update({f"{lifted_name}+{f}": fn for f, fn in FILTERS.items()})
                for view, kp, scores in inputs:
                    out = lifter.lift_full(
                        kp, WIDTH_PX, HEIGHT_PX, fps, scores=scores, focal_px=FOCAL_PX, mode=mode
                    )
                    poses = out.poses_mm
                    if extras and out.root_mm is not None:  # the default focal changes the pelvis only
                        default = lifter.lift_full(kp, WIDTH_PX, HEIGHT_PX, fps, scores=scores, mode=mode)
                        assert default.root_mm is not None
                        overall[lifted_name][cond].add_root(out.root_mm, default.root_mm, view.root_mm)
                    for method, post in methods.items():
                        pred = post(poses) if post else poses
                        overall[method][cond].add(pred, view.target_mm)
                        per_action[method][cond][view.action].add(pred, view.target_mm)
                        joint_sum[method][cond] += per_joint_error(pred, view.target_mm) * len(pred)
    return {
        "overall": {m: {c: a.result() for c, a in cs.items()} for m, cs in overall.items()},
        "per_action": {
            m: {c: {a: acc.result() for a, acc in acts.items()} for c, acts in cs.items()}
            for m, cs in per_action.items()
        },
        "per_joint_mm": {
            m: {c: (e / overall[m][c].frames).round(2).tolist() for c, e in cs.items()}
            for m, cs in joint_sum.items()
        },
    }


def format_table(results: dict[str, object]) -> str:
    """A markdown table: one row per method, P1 / P2 / MPJVE per condition."""
    overall: dict[str, dict[str, dict[str, float]]] = results["overall"]  # type: ignore[assignment]
    conds = list(next(iter(overall.values())).keys())
    head = "| method | " + " | ".join(f"{c} P1 / P2 / MPJVE" for c in conds) + " |"
    lines = [head, "|" + "---|" * (len(conds) + 1)]
    for method, cs in overall.items():
        cells = [f"{m['P1_mm']:.1f} / {m['P2_mm']:.1f} / {m['MPJVE_mm_per_frame']:.2f}" for m in cs.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_consistency_table(
    results: dict[str, object], conditions: Sequence[str] = ("σ=0", DETECTOR)
) -> str:
    """A markdown table of bone-length CV, left/right asymmetry and the pelvis errors per method."""
    overall: dict[str, dict[str, dict[str, float]]] = results["overall"]  # type: ignore[assignment]
    conds = [c for c in conditions if c in next(iter(overall.values()))]
    head = "| method | " + " | ".join(
        f"{c} bone CV % / L-R asym. % / pelvis err. mm (depth; default focal)" for c in conds
    )
    lines = [head + " |", "|" + "---|" * (len(conds) + 1)]
    for method, cs in overall.items():
        cells = []
        for c in conds:
            m = cs[c]
            root = "—"
            if "root_error_mm" in m:
                default = m["root_error_default_focal_mm"]
                root = f"{m['root_error_mm']:.0f} ({m['depth_error_mm']:.0f}; {default:.0f})"
            cells.append(f"{m['bone_cv_pct']:.2f} / {m['lr_asymmetry_pct']:.2f} / {root}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_action_table(results: dict[str, object], condition: str = "σ=10") -> str:
    """A markdown table of P1 per action (rows) and method (columns) under one condition."""
    per_action: dict[str, dict[str, dict[str, dict[str, float]]]] = results["per_action"]  # type: ignore[assignment]
    methods = list(per_action)
    actions = sorted({a for m in methods for a in per_action[m].get(condition, {})})
    lines = [
        f"| action ({condition}, P1 mm) | " + " | ".join(methods) + " |",
        "|" + "---|" * (len(methods) + 1),
    ]
    for action in actions:
        cells = [f"{per_action[m][condition][action]['P1_mm']:.1f}" for m in methods]
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(results: dict[str, object], path: Path) -> None:
    """Error vs 2D noise (P1 and MPJVE) and per-joint error at σ=0 and σ=10, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall: dict[str, dict[str, dict[str, float]]] = results["overall"]  # type: ignore[assignment]
    per_joint: dict[str, dict[str, list[float]]] = results["per_joint_mm"]  # type: ignore[assignment]
    noise = [(c, s) for c, s, d in CONDITIONS if d == 0.0 and c != DETECTOR]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for method, cs in overall.items():
        xs = [s for c, s in noise if c in cs]
        axes[0].plot(xs, [cs[c]["P1_mm"] for c, _ in noise if c in cs], marker="o", label=method)
        axes[1].plot(xs, [cs[c]["MPJVE_mm_per_frame"] for c, _ in noise if c in cs], marker="o", label=method)
    axes[0].set(xlabel="2D noise σ (px)", ylabel="P1 MPJPE (mm)", title="Position error vs noise")
    axes[1].set(xlabel="2D noise σ (px)", ylabel="MPJVE (mm/frame)", title="Jitter vs noise")
    methods = list(per_joint)
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        errs = per_joint[method].get("σ=10") or next(iter(per_joint[method].values()))
        axes[2].bar(np.arange(len(H36M17_JOINTS)) + i * width, errs, width, label=method)
    axes[2].set_xticks(np.arange(len(H36M17_JOINTS)) + 0.4, H36M17_JOINTS, rotation=75, fontsize=7)
    axes[2].set(ylabel="P1 (mm)", title="Per-joint error at σ=10 px")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(results: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def evaluate_tracks(lifters: dict[str, Lifter], folder: Path) -> dict[str, dict[str, float]]:
    """Skeleton consistency on real detector output: every poses file (`track_*.npz`) in `folder`.

    Each track's 2D keypoints and scores (what a detector saw, e.g. `poselift video`'s output) are lifted
    again by every lifter, causally, at the track's fps and camera. There is no 3D truth here, only the
    skeleton: per method, the median over tracks of the bone-length CV (median over bones of std / mean
    over time) and the mean left/right limb asymmetry, in percent.
    """
    from poselift.poses_file import load_poses_file

    tracks = [load_poses_file(path) for path in sorted(folder.glob("track_*.npz"))]
    if not tracks:
        raise FileNotFoundError(f"no track_*.npz poses files in {folder}")
    out: dict[str, dict[str, float]] = {}
    for name, lifter in lifters.items():
        cvs, asym = [], []
        for track in tracks:
            poses = lifter.lift(
                track.keypoints_px, track.width, track.height, track.fps, scores=track.scores, layout="h36m17"
            )
            seen = track.scores.max(axis=1) > 0  # frames with a detection
            cvs.append(bone_length_cv(poses[seen]))
            asym.append(limb_asymmetry(poses[seen]))
        out[name] = {
            "tracks": len(tracks),
            "frames": int(sum(t.num_frames for t in tracks)),
            "bone_cv_median_pct": round(100 * float(np.median(cvs)), 2),
            "lr_asymmetry_pct": round(100 * float(np.mean(asym)), 2),
        }
    return out


def format_tracks_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of `evaluate_tracks`' figures."""
    lines = [
        "| method (real detector output) | tracks | frames | bone-length CV % (median) | L-R asymmetry % |"
    ]
    lines.append("|---|---|---|---|---|")
    for name, m in results.items():
        cv, asym = m["bone_cv_median_pct"], m["lr_asymmetry_pct"]
        lines.append(f"| {name} | {m['tracks']} | {m['frames']} | {cv:.2f} | {asym:.2f} |")
    return "\n".join(lines)
