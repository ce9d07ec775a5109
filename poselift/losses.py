"""The paper's training loss: α·MSE + β·weighted first-order temporal smoothness of the predictions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from poselift.skeleton import JOINT_GROUPS, NUM_JOINTS


@dataclass(frozen=True)
class LossWeights:
    """α (position), β (smoothness) and one smoothness weight per joint group (paper: η=1, ρ=2.5, τ=4).

    `groups` maps a group name to its joints; the released code's alternative grouping (legs 2.5, arms 4)
    is a different `groups`/`group_weights` pair.
    """

    alpha: float = 1.0
    beta: float = 5.0
    group_weights: Mapping[str, float] = field(
        default_factory=lambda: {"torso_head": 1.0, "limb_mid": 2.5, "limb_terminal": 4.0}
    )
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: dict(JOINT_GROUPS))

    def per_joint(self, num_joints: int = NUM_JOINTS) -> torch.Tensor:
        """Smoothness weight of every joint, (J,); joints in no group weigh 0."""
        w = torch.zeros(num_joints)
        for name, joints in self.groups.items():
            w[list(joints)] = self.group_weights[name]
        return w


def position_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared per-coordinate error of (B, T, J, 3) poses."""
    assert pred.shape == target.shape
    return torch.mean((pred - target) ** 2)


def temporal_smoothness(pred: torch.Tensor, joint_weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared first difference over time of (B, T, J, 3) predictions, weights (J,)."""
    velocity = pred[:, 1:] - pred[:, :-1]  # (B, T-1, J, 3)
    return torch.mean(velocity**2 * joint_weights.to(pred)[:, None])


def lifting_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: LossWeights | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """α·MSE(pred, target) + β·smoothness(pred), both in the squared units of the inputs.

    Args:
        pred: (B, T, J, 3) predicted poses.
        target: (B, T, J, 3) ground truth, same units.
        weights: the loss weights; the paper's defaults when None.

    Returns:
        (the scalar loss, {"mse": …, "smooth": …} as floats for logging).
    """
    weights = weights or LossWeights()
    mse = position_mse(pred, target)
    if pred.shape[1] > 1 and weights.beta > 0:
        smooth = temporal_smoothness(pred, weights.per_joint(pred.shape[2]))
    else:
        smooth = pred.new_zeros(())
    loss = weights.alpha * mse + weights.beta * smooth
    return loss, {"mse": float(mse.detach()), "smooth": float(smooth.detach())}


def joint_error(pred: torch.Tensor, target: torch.Tensor, joint_weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean per-joint Euclidean error (MPJPE) of (B, J, 3) poses with (B, J) weights."""
    dist = torch.linalg.vector_norm(pred - target, dim=-1)  # (B, J)
    return (dist * joint_weight).sum() / joint_weight.sum().clamp_min(1.0)


def bone_lengths(poses: torch.Tensor, parents: tuple[int, ...]) -> torch.Tensor:
    """(..., J, 3) poses -> (..., J - 1) lengths of the bones joint -> parent (the root has none)."""
    child = list(range(1, len(parents)))
    return torch.linalg.vector_norm(poses[..., child, :] - poses[..., [parents[j] for j in child], :], dim=-1)


def root_error(
    pred_code: torch.Tensor, root_mm: torch.Tensor, focal_norm: torch.Tensor, principal_norm: torch.Tensor
) -> torch.Tensor:
    """VideoPose3D's trajectory loss: mean of |pelvis error| / true depth (unitless) over (B, 3) codes.

    Weighting by 1 / depth makes a 10 cm error at 2 m cost as much as 50 cm at 10 m, which is what the
    image can tell apart.
    """
    d = pred_code[:, 2:3]
    pred = torch.cat([d * (pred_code[:, :2] - principal_norm), d * focal_norm[:, None]], dim=-1)
    return (torch.linalg.vector_norm(pred - root_mm, dim=-1) / root_mm[:, 2].clamp_min(100.0)).mean()
