"""Bad input over real HTTP: every class gets its 4xx and a message that says what is wrong, never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from poselift import Lifter
from service.api import create_app
from tests.service.testkit import Clip, LiveServer, make_settings, open_session

KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789"


def expect_error(
    response: httpx.Response, status: int, code: str, *words: str, location: list[Any] | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error
    if location is not None:
        assert error.get("location") == location, error


def lift_body(clip: Clip, frames: int = 3, **changes: Any) -> dict[str, Any]:
    return {**clip.camera(), "keypoints": clip.keypoints_px[:frames].tolist(), **changes}


@pytest.fixture()
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def test_errors_bad_lift_bodies_are_4xx_with_messages(client: httpx.Client, clip: Clip) -> None:
    kp = clip.keypoints_px[:3].tolist()
    ragged = [kp[0], kp[1][:16], kp[2]]
    cases: list[tuple[dict[str, Any], tuple[str, ...], list[Any]]] = [  # all 422 invalid_input
        (lift_body(clip, keypoints=[frame[:16] for frame in kp]), ("(frames, 17, 2)",), ["keypoints"]),
        (lift_body(clip, keypoints=ragged), ("(frames, 17, 2)",), ["keypoints", 1]),
        (lift_body(clip, keypoints=[[[1.0, 2.0, 3.0]] * 17]), ("shape",), ["keypoints"]),
        (lift_body(clip, width=-640), ("1 to 100000", "-640"), ["width"]),
        (lift_body(clip, height=0), ("height",), ["height"]),
        (lift_body(clip, layout="openpose"), ("layout", "h36m17"), ["layout"]),
        (lift_body(clip, fps=0), ("fps",), ["fps"]),
        (lift_body(clip, keypoints=[]), ("keypoints", "no frames"), ["keypoints"]),
        (lift_body(clip, width="wide"), ("width",), ["width"]),
        (lift_body(clip, scores=[[1.5] * 17] * 3), ("scores[0][0]", "[0, 1]"), ["scores", 0, 0]),
        (lift_body(clip, scores=[[1.0] * 17] * 2), ("scores", "shape"), ["scores"]),
        (lift_body(clip, principal_px=[960.0]), ("principal_px", "two numbers"), ["principal_px"]),
        ({"width": 640, "height": 480}, ("keypoints", "Field required"), ["keypoints"]),
    ]
    for body, words, location in cases:
        expect_error(client.post("/v1/lift", json=body), 422, "invalid_input", *words, location=location)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_errors_non_finite_keypoints_are_422(client: httpx.Client, clip: Clip, bad: str) -> None:
    text = httpx.Request("POST", "/", json=lift_body(clip)).content.decode()
    first_number = text.split("[[[", 1)[1].split(",", 1)[0]
    body = text.replace(first_number, bad, 1)
    response = client.post("/v1/lift", content=body, headers={"content-type": "application/json"})
    expect_error(response, 422, "invalid_input", "keypoints[0][0]", "finite", location=["keypoints", 0, 0])


def test_errors_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/lift", content=b'{"width": 640,', headers={"content-type": "application/json"}
    )
    expect_error(response, 400, "malformed_request", "JSON")
    assert "location" not in response.json()["error"]
    # Not even text (FastAPI's own "error parsing the body"): the same code, not a generic one.
    response = client.post(
        "/v1/lift", content=b'{"width": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    expect_error(response, 400, "malformed_request", "parsing the body")


def test_errors_session_bad_frames_and_seq_order(client: httpx.Client, clip: Clip) -> None:
    session_id = open_session(client, clip)
    url = f"/v1/sessions/{session_id}/frames"
    frame = clip.keypoints_px[0].tolist()
    expect_error(
        client.post(url, json={"frames": [{"seq": 3, "keypoints": frame}, {"seq": 3, "keypoints": frame}]}),
        422, "invalid_input", "strictly increasing", "frames[1].seq:", location=["frames", 1, "seq"],
    )  # fmt: skip
    expect_error(
        client.post(url, json={"frames": [{"seq": -1, "keypoints": frame}]}), 422, "invalid_input", "seq"
    )
    expect_error(
        client.post(url, json={"frames": [{"seq": 0, "keypoints": frame[:5]}]}),
        422, "invalid_input", location=["frames", 0, "keypoints"],
    )  # fmt: skip
    expect_error(client.post(url, json={"frames": []}), 422, "invalid_input", "frames", location=["frames"])
    assert client.post(url, json={"frames": [{"seq": 10, "keypoints": frame}]}).status_code == 200
    expect_error(
        client.post(url, json={"frames": [{"seq": 7, "keypoints": frame}]}),
        409,
        "seq_conflict",
        "last seq is 10",
        location=["frames", 0, "seq"],
    )
    expect_error(
        client.post("/v1/sessions", json={**clip.camera(), "layout": "x"}), 422, "invalid_input", "layout"
    )


def test_errors_unknown_session_route_and_method(client: httpx.Client, clip: Clip) -> None:
    frames = {"frames": [{"seq": 0, "keypoints": clip.keypoints_px[0].tolist()}]}
    for session_id in ("no-such-session-0123456789", "x", "%2E%2E"):
        expect_error(client.get(f"/v1/sessions/{session_id}"), 404, "session_not_found")
        expect_error(client.post(f"/v1/sessions/{session_id}/frames", json=frames), 404, "session_not_found")
        expect_error(client.delete(f"/v1/sessions/{session_id}"), 404, "session_not_found")
    expect_error(client.get("/v2/lift"), 404, "not_found")
    expect_error(client.get("/v1/lift"), 405, "method_not_allowed")


def test_errors_limits_body_size_and_frame_count(lifter: Lifter, clip: Clip) -> None:
    settings = make_settings(max_body_bytes=20_000, max_frames_per_request=8, poses_held=6)
    with LiveServer(create_app(settings, lifter)) as live, httpx.Client(base_url=live.url) as client:
        expect_error(
            client.post("/v1/lift", json=lift_body(clip, 40)), 413, "payload_too_large", "20000 bytes"
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must still hold
            yield httpx.Request("POST", "/", json=lift_body(clip, 40)).content

        response = client.post("/v1/lift", content=chunks(), headers={"content-type": "application/json"})
        expect_error(response, 413, "payload_too_large")
        expect_error(client.post("/v1/lift", json=lift_body(clip, 9)), 413, "payload_too_large", "limit is 8")
        session_id = open_session(client, clip)
        frames = {"frames": [{"seq": i, "keypoints": clip.keypoints_px[i].tolist()} for i in range(9)]}
        expect_error(client.post(f"/v1/sessions/{session_id}/frames", json=frames), 413, "payload_too_large")
        # A session batch holds at most the poses a session keeps, so that it can always be resent whole.
        frames["frames"] = frames["frames"][:7]
        expect_error(
            client.post(f"/v1/sessions/{session_id}/frames", json=frames),
            413, "payload_too_large", "limit is 6", "POSELIFT_POSES_HELD",
        )  # fmt: skip
        frames["frames"] = frames["frames"][:6]
        first = client.post(f"/v1/sessions/{session_id}/frames", json=frames)
        again = client.post(f"/v1/sessions/{session_id}/frames", json=frames)
        assert first.status_code == again.status_code == 200, again.text
        assert again.json() == first.json()
        assert client.post("/v1/lift", json=lift_body(clip, 8)).status_code == 200


def test_errors_auth_keys_and_session_ownership(lifter: Lifter, clip: Clip) -> None:
    settings = make_settings(api_keys=(KEY_A, KEY_B))
    with LiveServer(create_app(settings, lifter)) as live, httpx.Client(base_url=live.url) as anon:
        alice = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {KEY_A}"})
        bob = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {KEY_B}"})
        wrong = httpx.Client(base_url=live.url, headers={"Authorization": "Bearer not-a-key-123"})
        basic = httpx.Client(base_url=live.url, headers={"Authorization": "Basic YWxpY2U6cHc="})
        for client, words in ((anon, ("Authorization: Bearer",)), (wrong, ("unknown API key",)), (basic, ())):
            response = client.post("/v1/lift", json=lift_body(clip))
            expect_error(response, 401, "unauthenticated", *words)
            assert response.headers["www-authenticate"] == "Bearer"
            expect_error(client.post("/v1/sessions", json=clip.camera()), 401, "unauthenticated")
            expect_error(client.get("/v1/model"), 401, "unauthenticated")
        assert alice.post("/v1/lift", json=lift_body(clip)).status_code == 200
        session_id = open_session(alice, clip)
        frames = {"frames": [{"seq": 0, "keypoints": clip.keypoints_px[0].tolist()}]}
        # Bob's key sees no such session: the same 404 as an id that never existed, so ids can't be probed.
        expect_error(bob.get(f"/v1/sessions/{session_id}"), 404, "session_not_found")
        expect_error(bob.post(f"/v1/sessions/{session_id}/frames", json=frames), 404, "session_not_found")
        expect_error(bob.delete(f"/v1/sessions/{session_id}"), 404, "session_not_found")
        expect_error(anon.get(f"/v1/sessions/{session_id}"), 401, "unauthenticated")
        assert alice.post(f"/v1/sessions/{session_id}/frames", json=frames).status_code == 200
        assert alice.delete(f"/v1/sessions/{session_id}").status_code == 204
        for probe in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes stay open
            assert anon.get(probe).status_code == 200
        for c in (alice, bob, wrong, basic):
            c.close()


def test_errors_unexpected_exception_is_generic_500_and_logged(
    lifter: Lifter, clip: Clip, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr("service.lifting.LiftingCore.lift", broken)
    with LiveServer(create_app(make_settings(), lifter)) as live, httpx.Client(base_url=live.url) as client:
        response = client.post("/v1/lift", json=lift_body(clip))
        assert client.get("/healthz").status_code == 200  # the server lives on
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error; it has been logged"}}
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert logged and "POST /v1/lift" in logged[0].getMessage()
