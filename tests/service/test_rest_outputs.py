"""What /v1/lift and sessions return beyond poses, over real HTTP: trajectory, visible fraction, mode, fps."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from poselift import Lifter
from tests.service.testkit import TOLERANCE_MM, Clip, LiveServer, frames_body, open_session


def _lift(client: httpx.Client, clip: Clip, **extra: Any) -> dict[str, Any]:
    body = {**clip.camera(), "keypoints": clip.keypoints_px.tolist(), **extra}
    response = client.post("/v1/lift", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_lift_returns_trajectory_and_visible_as_the_python_api(
    live: LiveServer, lifter: Lifter, clip: Clip
) -> None:
    offline = lifter.lift_full(clip.keypoints_px, clip.width, clip.height, clip.fps, focal_px=1100.0)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        answer = _lift(client, clip, focal_px=1100.0)
    np.testing.assert_allclose(answer["poses"], offline.poses_mm, rtol=0, atol=TOLERANCE_MM)
    assert offline.root_mm is not None  # the default model has a root head
    np.testing.assert_allclose(answer["trajectory"], offline.root_mm, rtol=1e-5, atol=0.01)
    np.testing.assert_allclose(answer["visible"], offline.visible, rtol=0, atol=1e-6)
    assert all(v == 1.0 for v in answer["visible"])  # every joint of every frame was given


def test_focal_length_scales_the_depth_of_the_trajectory_only(live: LiveServer, clip: Clip) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        near = np.asarray(_lift(client, clip, focal_px=1000.0)["trajectory"])
        far = np.asarray(_lift(client, clip, focal_px=2000.0)["trajectory"])
        default = np.asarray(_lift(client, clip)["trajectory"])
    np.testing.assert_allclose(far[:, 2], 2 * near[:, 2], rtol=1e-4)
    np.testing.assert_allclose(far[:, :2], near[:, :2], rtol=1e-4, atol=0.05)
    assert not np.allclose(default[:, 2], near[:, 2])  # the default focal (65° across 1280 px) is not 1000 px


def test_sessions_return_the_clips_causal_roots_and_visible(
    live: LiveServer, lifter: Lifter, clip: Clip
) -> None:
    kp = clip.keypoints_px.copy()
    scores = np.ones(kp.shape[:2])
    scores[20:30] = 0.0  # ten frames with nobody detected
    with httpx.Client(base_url=live.url, timeout=60) as client:
        whole = _lift(client, clip, scores=scores.tolist())
        session_id = open_session(client, clip)
        roots, visible = [], []
        for first in range(0, len(kp), 7):
            body = frames_body(clip, list(range(len(kp))), range(first, min(first + 7, len(kp))))
            for frame, index in zip(body["frames"], range(first, first + 7), strict=False):
                frame["scores"] = scores[index].tolist()
            response = client.post(f"/v1/sessions/{session_id}/frames", json=body)
            assert response.status_code == 200, response.text
            roots += [p["root"] for p in response.json()["poses"]]
            visible += [p["visible"] for p in response.json()["poses"]]
    np.testing.assert_allclose(roots, whole["trajectory"], rtol=1e-5, atol=0.01)
    np.testing.assert_allclose(visible, whole["visible"], rtol=0, atol=1e-6)
    seen = lifter.window - 10  # frame 29's window holds the ten empty frames 20..29 (edge padding is frame 0)
    assert whole["visible"][19] == 1.0 and whole["visible"][29] == pytest.approx(
        seen / lifter.window, abs=1e-6
    )


def test_offline_mode_differs_and_is_refused_where_the_model_cannot(live: LiveServer, clip: Clip) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        causal = np.asarray(_lift(client, clip)["poses"])
        offline = np.asarray(_lift(client, clip, mode="offline")["poses"])
        assert offline.shape == causal.shape and not np.allclose(offline, causal)
        bad = client.post(
            "/v1/lift", json={**clip.camera(), "keypoints": clip.keypoints_px.tolist(), "mode": "x"}
        )
    assert bad.status_code == 422


@pytest.mark.parametrize("fps", [10.0, 120.0])
def test_sessions_at_any_frame_rate_agree_with_the_clip(live: LiveServer, clip: Clip, fps: float) -> None:
    at_rate = Clip(clip.keypoints_px, clip.width, clip.height, fps)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        whole = np.asarray(_lift(client, at_rate)["poses"])
        session_id = open_session(client, at_rate)
        poses = []
        for first in range(0, len(clip.keypoints_px), 9):
            body = frames_body(at_rate, list(range(60)), range(first, min(first + 9, 60)))
            response = client.post(f"/v1/sessions/{session_id}/frames", json=body)
            assert response.status_code == 200, response.text
            poses += [p["joints"] for p in response.json()["poses"]]
    np.testing.assert_allclose(poses, whole, rtol=0, atol=TOLERANCE_MM)


def test_a_session_fps_whose_history_cannot_be_kept_is_a_clear_422(live: LiveServer, clip: Clip) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post("/v1/sessions", json={**clip.camera(), "fps": 1000.0})
        assert response.status_code == 422
        assert "too high for a session" in response.json()["error"]["message"]
        ok = client.post(
            "/v1/lift", json={**clip.camera(), "fps": 1000.0, "keypoints": clip.keypoints_px.tolist()}
        )
        assert ok.status_code == 200  # a clip needs no stored history
