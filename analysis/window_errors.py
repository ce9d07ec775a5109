"""P1 of each position of the seq2seq decoder's window on the clean validation rig.

Run: `python -m analysis.window_errors [--checkpoint seq2seq]`. A causal lifter returns the window's last
decoded pose; this shows how its error compares with the window's other positions.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from poselift.inputs import prepare_keypoints
from poselift.lifter import load_lifter
from poselift.windows import causal_windows
from trainer.mocap import Mocap, split_path
from trainer.rig import HEIGHT_PX, WIDTH_PX, rig_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="seq2seq")
    parser.add_argument("--data", default=None, help="mocap npz (default: the CMU val split)")
    args = parser.parse_args()
    lifter = load_lifter(args.checkpoint, "cpu")
    total, frames = np.zeros(lifter.window), 0
    for view in rig_views(Mocap.load(args.data or split_path("val"))):
        kp, sc = prepare_keypoints(view.keypoints_px, WIDTH_PX, HEIGHT_PX)
        w = lifter.window
        with torch.inference_mode():
            poses = lifter.model(
                torch.from_numpy(causal_windows(kp, w)), torch.from_numpy(causal_windows(sc, w))
            )
        err = np.linalg.norm(poses.numpy() - causal_windows(view.target_mm, w), axis=-1)  # (T, W, J)
        total += err.mean(axis=2).sum(axis=0)
        frames += len(err)
    print("P1 (mm) by window position, oldest first:", " ".join(f"{e:.1f}" for e in total / frames))


if __name__ == "__main__":
    main()
