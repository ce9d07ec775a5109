"""Evaluation on the fixed rig: P1, P2 and MPJVE per method, noise level and action (`poselift evaluate`)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poselift.lifter import Lifter
from poselift.metrics import mpjpe, mpjve, p_mpjpe, per_joint_error
from poselift.skeleton import H36M17_JOINTS
from poselift.windows import causal_windows
from trainer.mocap import Mocap
from trainer.rig import HEIGHT_PX, WIDTH_PX, corrupt, rig_views

# (name, Gaussian σ in px, fraction of joints dropped)
CONDITIONS: tuple[tuple[str, float, float], ...] = (
    ("σ=0", 0.0, 0.0),
    ("σ=5", 5.0, 0.0),
    ("σ=10", 10.0, 0.0),
    ("σ=15", 15.0, 0.0),
    ("σ=20", 20.0, 0.0),
    ("drop10%", 0.0, 0.1),
    ("σ=10+drop10%", 10.0, 0.1),
)
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

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        n = len(pred)
        self.frames += n
        self.p1 += mpjpe(pred, target) * n
        self.p2 += p_mpjpe(pred, target) * n
        if n > 1:
            self.vel_frames += n - 1
            self.mpjve += mpjve(pred, target) * (n - 1)

    def result(self) -> dict[str, float]:
        return {
            "P1_mm": round(self.p1 / max(self.frames, 1), 2),
            "P2_mm": round(self.p2 / max(self.frames, 1), 2),
            "MPJVE_mm_per_frame": round(self.mpjve / max(self.vel_frames, 1), 3),
            "frames": self.frames,
        }


def evaluate_lifters(
    lifters: dict[str, Lifter],
    data: Mocap,
    conditions: Sequence[tuple[str, float, float]] = CONDITIONS,
    seed: int = 0,
    fps: float = 30.0,
) -> dict[str, object]:
    """Score every lifter (and frame-wise ones also with causal median/mean filters) on the rig.

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
        inputs = [(v, *corrupt(v.keypoints_px, sigma, drop, rng)) for v in views]
        for name, lifter in lifters.items():
            methods: dict[str, PoseFilter | None] = {name: None}
            if lifter.window == 1:
                methods.update({f"{name}+{f}": fn for f, fn in FILTERS.items()})
            for view, kp, scores in inputs:
                poses = lifter.lift(kp, WIDTH_PX, HEIGHT_PX, fps, scores=scores)
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
    """A markdown table: one row per method, P1 / MPJVE per condition."""
    overall: dict[str, dict[str, dict[str, float]]] = results["overall"]  # type: ignore[assignment]
    conds = list(next(iter(overall.values())).keys())
    head = "| method | " + " | ".join(f"{c} P1 / P2 / MPJVE" for c in conds) + " |"
    lines = [head, "|" + "---|" * (len(conds) + 1)]
    for method, cs in overall.items():
        cells = [f"{m['P1_mm']:.1f} / {m['P2_mm']:.1f} / {m['MPJVE_mm_per_frame']:.2f}" for m in cs.values()]
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
    noise = [(c, s) for c, s, d in CONDITIONS if d == 0.0]
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
