import numpy as np
import pytest

from poselift.skeleton import (
    H36M17_JOINTS,
    H36M17_PARENTS,
    JOINT_GROUPS,
    NUM_JOINTS,
    coco17_to_h36m17,
    flip_permutation,
    to_h36m17,
)


def test_skeleton_tables_are_consistent():
    assert NUM_JOINTS == len(H36M17_JOINTS) == len(H36M17_PARENTS) == 17
    assert all(p < j for j, p in enumerate(H36M17_PARENTS))  # topological order
    perm = flip_permutation()
    assert sorted(perm.tolist()) == list(range(17))
    assert (perm[perm] == np.arange(17)).all()
    for j, name in enumerate(H36M17_JOINTS):
        twin = H36M17_JOINTS[perm[j]]
        assert twin == name.replace("left", "X").replace("right", "left").replace("X", "right")


def test_joint_groups_match_the_paper():
    names = {g: {H36M17_JOINTS[j] for j in js} for g, js in JOINT_GROUPS.items()}
    assert names["limb_mid"] == {"left_knee", "right_knee", "left_elbow", "right_elbow"}
    assert names["limb_terminal"] == {"left_ankle", "right_ankle", "left_wrist", "right_wrist"}
    assert {"thorax", "head", "left_shoulder", "right_hip"} <= names["torso_head"]


def _coco_example() -> np.ndarray:
    kp = np.zeros((17, 2))
    kp[0] = [100, 40]  # nose
    kp[1], kp[2] = [105, 35], [95, 35]  # eyes
    kp[3], kp[4] = [110, 38], [90, 38]  # ears
    kp[5], kp[6] = [120, 60], [80, 60]  # shoulders
    kp[7], kp[8] = [125, 90], [75, 90]
    kp[9], kp[10] = [128, 120], [72, 120]
    kp[11], kp[12] = [110, 130], [90, 130]  # hips
    kp[13], kp[14] = [112, 170], [88, 170]
    kp[15], kp[16] = [113, 210], [87, 210]
    return kp


def test_coco_to_h36m_derived_joints():
    kp, scores = coco17_to_h36m17(_coco_example()[None])
    j = {n: kp[0, i] for i, n in enumerate(H36M17_JOINTS)}
    assert j["pelvis"] == pytest.approx([100, 130])
    assert j["thorax"] == pytest.approx([100, 60])
    assert j["spine"] == pytest.approx([100, 95])
    assert j["left_wrist"] == pytest.approx([128, 120])
    assert j["right_ankle"] == pytest.approx([87, 210])
    assert j["neck"] == pytest.approx([100, 35])  # between the eyes
    assert j["head"] == pytest.approx([100, 1.5 * 38 - 0.5 * 60])  # above the ears
    assert (scores == 1).all()


def test_coco_conversion_carries_scores_and_missing_sources():
    scores = np.full((1, 17), 0.9)
    scores[0, 11] = 0.0  # left hip missing
    scores[0, 5] = 0.4  # left shoulder unsure
    _, out = coco17_to_h36m17(_coco_example()[None], scores)
    s = dict(zip(H36M17_JOINTS, out[0], strict=True))
    assert s["pelvis"] == 0 and s["spine"] == 0 and s["left_hip"] == 0
    assert s["right_hip"] == pytest.approx(0.9)
    assert s["thorax"] == pytest.approx(0.4) and s["left_shoulder"] == pytest.approx(0.4)


def test_to_h36m17_rejects_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout"):
        to_h36m17(np.zeros((1, 17, 2)), None, "openpose25")
