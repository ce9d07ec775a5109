import pytest
import torch

from poselift.losses import LossWeights, lifting_loss, temporal_smoothness


def test_smoothness_hand_computed_with_group_weights():
    pred = torch.zeros(1, 2, 17, 3)
    pred[0, 1, 3, 0] = 2.0  # right ankle (limb-terminal, τ=4) moves by 2 along x
    w = LossWeights().per_joint()
    # mean over (B=1, T-1=1, J=17, 3) of w·Δ²: 4 * 4 / 51
    assert float(temporal_smoothness(pred, w)) == pytest.approx(16 / 51)


def test_lifting_loss_combines_terms():
    target = torch.zeros(2, 3, 17, 3)
    pred = torch.ones(2, 3, 17, 3)  # constant over time: no smoothness penalty
    loss, parts = lifting_loss(pred, target, LossWeights(alpha=2.0, beta=5.0))
    assert parts["mse"] == pytest.approx(1.0) and parts["smooth"] == pytest.approx(0.0)
    assert float(loss) == pytest.approx(2.0)
    moving = pred.clone()
    moving[:, 1:] += 1.0
    loss_moving, parts_moving = lifting_loss(moving, target)
    assert parts_moving["smooth"] > 0
    assert float(loss_moving) == pytest.approx(parts_moving["mse"] + 5.0 * parts_moving["smooth"], rel=1e-5)


def test_group_weights_are_configurable():
    w = LossWeights(group_weights={"torso_head": 0.0, "limb_mid": 1.0, "limb_terminal": 0.0}).per_joint()
    assert w.sum() == 4  # knees and elbows only
