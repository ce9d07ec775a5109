import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from poselift.metrics import mpjpe, mpjve, p_mpjpe, per_joint_error, procrustes_align


def test_mpjpe_hand_computed():
    target = np.zeros((1, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # errors 5 and 1
    assert mpjpe(pred, target) == pytest.approx(3.0)
    assert per_joint_error(pred, target) == pytest.approx([5.0, 1.0])


def test_mpjpe_rejects_shape_mismatch():
    with pytest.raises(AssertionError):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))


def test_p_mpjpe_removes_similarity_transform():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 17, 3)) * 300
    rot = Rotation.random(4, random_state=1).as_matrix()
    pred = 1.7 * np.einsum("nij,nkj->nki", rot, target) + np.array([10.0, -20.0, 5.0])
    assert p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-6)
    assert mpjpe(pred, target) > 100


def test_p_mpjpe_hand_computed_residual():
    # Two points on a line: any similarity maps them exactly; a third off-line point keeps a residual.
    target = np.array([[[0.0, 0, 0], [2, 0, 0], [1, 0, 0]]])
    pred = np.array([[[0.0, 0, 0], [2, 0, 0], [1, 1, 0]]])
    aligned = procrustes_align(pred, target)
    # Best similarity fit: centroids match, rotation identity, scale = <p0,t0>/|p0|^2 = 2/(2+2/3)=0.75.
    mu_p = pred[0].mean(axis=0)
    expected = 0.75 * (pred[0] - mu_p) + target[0].mean(axis=0)
    assert aligned[0] == pytest.approx(expected, abs=1e-9)


def test_p_mpjpe_never_reflects():
    target = np.array([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]])
    mirrored = target * np.array([-1.0, 1, 1])
    assert p_mpjpe(mirrored, target) > 0.1


def test_mpjve_hand_computed():
    target = np.zeros((3, 1, 3))
    pred = np.array([[[0.0, 0, 0]], [[3.0, 4, 0]], [[3.0, 4, 0]]])  # velocity errors 5 then 0
    assert mpjve(pred, target) == pytest.approx(2.5)
    # A constant offset has no velocity error.
    assert mpjve(target + 7.0, target) == pytest.approx(0.0)
