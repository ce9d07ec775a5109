"""How much the smoothness term charges the *true* motion of training windows (the choice of β).

Run: `python -m analysis.motion_stats`. Prints the ground truth's own mean per-joint velocity and its weighted
smoothness term next to the position MSE a model with a given P1 error would have, both in the units the
trainer's loss uses (m²). With the paper's β = 5 the smoothness charge on real motion outweighs the MSE of a
good model, so a model is pushed to under-move; that is why the CPU recipe uses β = 1.
"""

from __future__ import annotations

import numpy as np

from poselift.losses import LossWeights
from trainer.augment import AugmentConfig, WindowSampler
from trainer.mocap import Mocap, split_path


def main() -> None:
    weights = LossWeights().per_joint().numpy()
    for name in ("train", "val"):
        sampler = WindowSampler(Mocap.load(split_path(name)), 5, AugmentConfig(), np.random.default_rng(0))
        target_m = sampler.sample(4096)["target_mm"] / 1000.0  # (B, 5, 17, 3)
        velocity = np.diff(target_m, axis=1)
        speed_mm = np.linalg.norm(velocity, axis=-1).mean() * 1000
        smooth = float((velocity**2 * weights[:, None]).mean())
        print(
            f"{name}: mean joint speed {speed_mm:.1f} mm/frame; smoothness of the truth {smooth:.2e} m²: "
            + ", ".join(f"β={b:g} → {b * smooth:.1e}" for b in (1, 5))
        )
    for p1_mm in (40, 60, 80):
        print(f"MSE (per coordinate) of a model with P1 ≈ {p1_mm} mm: {(p1_mm / 1000) ** 2 / 3:.1e} m²")


if __name__ == "__main__":
    main()
