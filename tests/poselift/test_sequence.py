"""The shared sequence path: resampled windows, batching invariance, bone lengths, the visible fraction."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.sequence import (
    BoneState,
    accumulate_bones,
    apply_bone_lengths,
    bone_lengths_mm,
    causal_inputs,
    finish,
    history_length,
    offline_inputs,
    visible_fraction,
)
from poselift.windows import causal_windows, sample_windows, window_times


def _frames(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kp = rng.uniform(-0.5, 0.5, (count, 17, 2)).astype(np.float32)
    sc = rng.uniform(0.2, 1.0, (count, 17)).astype(np.float32)
    sc[rng.random(sc.shape) < 0.1] = 0.0
    kp[sc == 0] = 0.0
    return kp, sc


def test_windows_at_the_models_rate_are_the_plain_causal_windows() -> None:
    kp, sc = _frames(40)
    win_kp, win_sc = causal_inputs(kp[:0], sc[:0], kp, sc, window=9, step=1.0)
    assert np.array_equal(win_kp, causal_windows(kp, 9)) and np.array_equal(win_sc, causal_windows(sc, 9))


@pytest.mark.parametrize("step", [1.0, 1 / 3, 4.0, 30 / 29.97])
def test_any_split_into_history_and_new_frames_gives_the_same_windows(step: float) -> None:
    kp, sc = _frames(60)
    whole = causal_inputs(kp[:0], sc[:0], kp, sc, 9, step)
    history = history_length(9, step)
    for split in (1, 17, 59):
        start = max(split - history, 0)  # what a session keeps
        part = causal_inputs(kp[start:split], sc[start:split], kp[split:], sc[split:], 9, step)
        assert np.array_equal(part[0], whole[0][split:]) and np.array_equal(part[1], whole[1][split:])


def test_in_between_times_interpolate_and_need_both_neighbours() -> None:
    kp = np.zeros((2, 17, 2), np.float32)
    kp[1] = 1.0
    sc = np.ones((2, 17), np.float32)
    sc[1, 0] = 0.0  # joint 0 missing in the second frame
    sc[0, 1] = 0.5
    out_kp, out_sc = sample_windows(kp, sc, np.array([[0.25]]))
    assert out_kp[0, 0, 2] == pytest.approx([0.25, 0.25])
    assert out_sc[0, 0, 0] == 0.0 and out_kp[0, 0, 0].tolist() == [0.0, 0.0]  # missing: not made up
    assert out_sc[0, 0, 1] == 0.5  # the weaker of the two


def test_window_times_span_the_same_duration_at_any_rate() -> None:
    for step in (1 / 3, 1.0, 4.0):
        times = window_times(np.array([1000.0]), 81, step)
        assert times[0, -1] == 1000.0 and times[0, 0] == pytest.approx(1000.0 - 80 * step)


def test_offline_windows_are_the_causal_ones_those_of_the_reversed_clip_and_centred_ones() -> None:
    kp, sc = _frames(20)
    win_kp, win_sc = offline_inputs(kp, sc, window=9, step=1.0)
    assert win_kp.shape == (60, 9, 17, 2) and win_sc.shape == (60, 9, 17)
    assert np.array_equal(win_kp[:20], causal_windows(kp, 9))
    assert np.array_equal(win_kp[20:40], causal_windows(kp[::-1], 9))
    centred = np.clip(np.arange(20)[:, None] + np.arange(-4, 5)[None, :], 0, 19)  # edge-padded both ends
    assert np.array_equal(win_kp[40:], kp[centred]) and np.array_equal(win_sc[40:], sc[centred])


def test_offline_output_is_the_mean_of_the_three_estimates_in_clip_order() -> None:
    rng = np.random.default_rng(4)
    heads = rng.normal(0, 300, (15, 2, 18, 3)).astype(np.float32)
    heads[:, :, 0] = 0.0
    window_scores = np.ones((15, 9, 17), np.float32)
    out, _ = finish(heads, window_scores, np.ones((5, 17)), (1.5, np.zeros(2)), None, True, offline=True)
    want = (heads[:5, 0, :17] + heads[5:10, 0, :17][::-1] + heads[10:, 1, :17]) / 3
    np.testing.assert_allclose(out.poses_mm, want, rtol=1e-5, atol=1e-3)
    assert out.poses_mm.shape == (5, 17, 3) and out.visible.shape == (5,)


def test_bone_lengths_are_applied_and_directions_kept() -> None:
    rng = np.random.default_rng(1)
    poses = rng.normal(0, 300, (5, 17, 3)).astype(np.float32)
    poses[:, 0] = 0.0
    lengths = np.full(16, 250.0)
    fixed = apply_bone_lengths(poses, lengths)
    np.testing.assert_allclose(bone_lengths_mm(fixed), 250.0, rtol=1e-5)
    before = poses[:, 1] - poses[:, 0]
    after = fixed[:, 1] - fixed[:, 0]
    np.testing.assert_allclose(
        after / np.linalg.norm(after, axis=-1, keepdims=True),
        before / np.linalg.norm(before, axis=-1, keepdims=True),
        atol=1e-5,
    )


def test_the_running_bone_estimate_is_the_same_for_any_batching() -> None:
    rng = np.random.default_rng(2)
    poses = rng.normal(0, 300, (30, 17, 3)).astype(np.float32)
    scores = rng.uniform(0, 1, (30, 17)).astype(np.float32)
    whole, state_whole = accumulate_bones(BoneState.empty(), poses, scores)
    state = BoneState.empty()
    parts = []
    for a, b in ((0, 1), (1, 13), (13, 30)):
        est, state = accumulate_bones(state, poses[a:b], scores[a:b])
        parts.append(est)
    assert np.array_equal(np.concatenate(parts), whole)
    assert np.array_equal(state.length_sum, state_whole.length_sum)


def test_finish_makes_one_skeleton_and_reports_what_was_seen() -> None:
    rng = np.random.default_rng(3)
    skeleton = rng.normal(0, 300, (1, 1, 18, 3))  # one person, posed a little differently in each frame
    heads = (skeleton + rng.normal(0, 40, (50, 2, 18, 3))).astype(np.float32)
    heads[:, :, 0] = 0.0
    window_scores = np.ones((50, 9, 17), np.float32)
    window_scores[:, :3] = 0.0  # a third of each window unseen
    out, _ = finish(
        heads, window_scores, np.ones((50, 17), np.float32), (1.5, np.zeros(2)), BoneState.empty(), True
    )
    lengths = bone_lengths_mm(out.poses_mm[-10:])
    assert (lengths.std(axis=0) / lengths.mean(axis=0)).max() < 0.2  # settled near the running mean
    np.testing.assert_allclose(out.visible, 6 / 9, rtol=1e-6)
    assert out.root_mm is not None and out.root_mm.shape == (50, 3)
    np.testing.assert_allclose(visible_fraction(window_scores), 6 / 9, rtol=1e-6)
