"""Which combination of the tcn's estimates makes the best offline (whole-clip) pose, on the val rig.

Run: `python -m analysis.offline_variants [--checkpoint tcn]`. Each variant replaces the offline mode of
`Lifter.lift_sequence`; the causal rows are the same for all. Estimates of frame t:

- forward: the newest-frame head of the causal window ending at t (the causal pose);
- backward: the same over the clip played backwards (frames >= t);
- centre: the centre-frame head of the window centred on t (edge-padded past the clip's end);
- centre-backward: the centre head over the reversed clip.

Variants: `fwd+bwd` (the offline mode before 438fe4b), `centre`, `fwd+bwd+centre` (the shipped one since),
`centre+centre-bwd`, and all four. Every variant uses the whole clip's bone lengths, as the service does.
"""

from __future__ import annotations

import argparse

import numpy as np

from poselift.lifter import Lifter, load_lifter
from poselift.sequence import BoneState, SequenceOutput, causal_inputs, finish, frame_step
from poselift.windows import sample_windows, window_times
from trainer.evaluate import CONDITIONS, DETECTOR, evaluate_lifters
from trainer.mocap import Mocap, split_path

VARIANTS = ("fwd+bwd", "centre", "fwd+bwd+centre", "centre+centre-bwd", "all four")


class VariantLifter(Lifter):
    """A lifter whose offline mode is one of VARIANTS."""

    variant = "fwd+bwd+centre"

    def lift_sequence(
        self,
        keypoints_norm: np.ndarray,
        scores: np.ndarray,
        fps: float,
        camera_norm: tuple[float, np.ndarray],
        mode: str = "causal",
    ) -> SequenceOutput:
        if mode != "offline":
            return super().lift_sequence(keypoints_norm, scores, fps, camera_norm, mode)
        kp, sc, n = keypoints_norm, scores, len(keypoints_norm)
        step = frame_step(fps, self.model_fps)

        def newest(k: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            win_kp, win_sc = causal_inputs(k[:0], s[:0], k, s, self.window, step)
            return self.run_windows(win_kp, win_sc)[:, 0].astype(np.float64), win_sc

        def centre(k: np.ndarray, s: np.ndarray) -> np.ndarray:
            ends = np.arange(len(k), dtype=np.float64) + (self.window - 1) // 2 * step
            win_kp, win_sc = sample_windows(k, s, window_times(ends, self.window, step))
            return self.run_windows(win_kp, win_sc)[:, 1].astype(np.float64)

        fwd, win_sc = newest(kp, sc)
        bwd = newest(kp[::-1], sc[::-1])[0][::-1]
        if self.variant == "fwd+bwd":
            rows = (fwd + bwd) / 2
        elif self.variant == "centre":
            rows = centre(kp, sc)
        elif self.variant == "fwd+bwd+centre":
            rows = (fwd + bwd + centre(kp, sc)) / 3
        elif self.variant == "centre+centre-bwd":
            rows = (centre(kp, sc) + centre(kp[::-1], sc[::-1])[::-1]) / 2
        else:
            rows = (fwd + bwd + centre(kp, sc) + centre(kp[::-1], sc[::-1])[::-1]) / 4
        # `finish`'s offline path with three identical estimates: the rows as they are, whole-clip bones.
        heads = np.zeros((3 * n, 2, rows.shape[1], 3), np.float32)
        heads[:n, 0], heads[n : 2 * n, 0], heads[2 * n :, 1] = rows, rows[::-1], rows
        window_scores = np.concatenate([win_sc, win_sc[::-1], win_sc])
        out, _ = finish(heads, window_scores, sc, camera_norm, BoneState.empty(), self.has_root, True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checkpoint", default="tcn")
    parser.add_argument("--data", default=None, help="mocap npz (default: the CMU val split)")
    args = parser.parse_args()
    base = load_lifter(args.checkpoint, "cpu")
    lifters: dict[str, Lifter] = {}
    for variant in VARIANTS:
        lifter = VariantLifter(base.model, base.metadata, base.path, base.runtime)
        lifter.variant = variant
        lifters[variant] = lifter
    conditions = [c for c in CONDITIONS if c[0] in ("σ=0", "σ=10", DETECTOR)]
    results = evaluate_lifters(lifters, Mocap.load(args.data or split_path("val")), conditions=conditions)
    overall = results["overall"]
    assert isinstance(overall, dict)
    print("| offline estimate | " + " | ".join(f"{c} P1 / MPJVE" for c, _, _ in conditions) + " |")
    print("|---" * (len(conditions) + 1) + "|")
    causal = overall[VARIANTS[0]]
    print("| causal | " + " | ".join(_cell(causal[c]) for c, _, _ in conditions) + " |")
    for variant in VARIANTS:
        row = overall[f"{variant} (offline)"]
        print(f"| {variant} | " + " | ".join(_cell(row[c]) for c, _, _ in conditions) + " |")


def _cell(metrics: dict[str, float]) -> str:
    return f"{metrics['P1_mm']:.1f} / {metrics['MPJVE_mm_per_frame']:.2f}"


if __name__ == "__main__":
    main()
