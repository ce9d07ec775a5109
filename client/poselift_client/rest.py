"""A small helper over poselift's REST API, on the standard library alone (`urllib`).

    api = RestClient("http://localhost:8000", api_key=None)
    poses = api.lift(keypoints_px, width=1920, height=1080, fps=30.0)["poses"]   # (T, 17, 3) mm
    session = api.open_session(width=1920, height=1080, fps=30.0)
    api.push_frames(session["session_id"], [{"seq": 0, "keypoints": keypoints_px[0]}])

Keypoints and scores may be nested lists or anything with `.tolist()` (numpy arrays). Answers are the JSON
bodies as dicts; an error answer raises `RestError` with its status, code, message and location
(docs/rest.md).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class RestError(Exception):
    """An error answer of the server: HTTP `status`, the stable `code` (e.g. seq_conflict), its message, and
    its `location` in the request body (e.g. ["frames", 3, "keypoints", 5]; None when it has none)."""

    def __init__(self, status: int, code: str, message: str, location: list[str | int] | None = None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.location = status, code, message, location


def _plain(value: Any) -> Any:
    """`value` as JSON-ready lists (numpy arrays through `.tolist()`)."""
    return value.tolist() if hasattr(value, "tolist") else value


class RestClient:
    """The REST routes of one server (or balancer), with an optional API key."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; the decoded JSON answer (None for 204). RestError for an error answer."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                detail = json.loads(text)["error"]
                location = detail.get("location")
                raise RestError(error.code, str(detail["code"]), str(detail["message"]), location) from None
            except (ValueError, KeyError, TypeError):
                raise RestError(error.code, "http_error", text[:500]) from None
        return json.loads(payload) if payload else None

    @staticmethod
    def _camera(
        width: int, height: int, fps: float | None, layout: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        camera: dict[str, Any] = {"layout": layout, "width": int(width), "height": int(height), **extra}
        if fps is not None:
            camera["fps"] = float(fps)
        return camera

    def lift(
        self,
        keypoints_px: Any,
        width: int,
        height: int,
        fps: float | None = None,
        scores: Any = None,
        layout: str = "h36m17",
        **extra: Any,
    ) -> dict[str, Any]:
        """`POST /v1/lift`: (T, 17, 2) pixels → `{"joints", "units", "poses": (T, 17, 3) mm, …}`.

        `extra` passes further body fields the server knows (e.g. `mode`, `focal_px`).
        """
        body = self._camera(width, height, fps, layout, extra)
        body["keypoints"] = _plain(keypoints_px)
        if scores is not None:
            body["scores"] = _plain(scores)
        result: dict[str, Any] = self.request("POST", "/v1/lift", body)
        return result

    def open_session(
        self, width: int, height: int, fps: float | None = None, layout: str = "h36m17", **extra: Any
    ) -> dict[str, Any]:
        """`POST /v1/sessions` → `{"session_id", "expires_in_s", "window"}`."""
        result: dict[str, Any] = self.request(
            "POST", "/v1/sessions", self._camera(width, height, fps, layout, extra)
        )
        return result

    def push_frames(self, session_id: str, frames: list[dict[str, Any]]) -> dict[str, Any]:
        """`POST /v1/sessions/{id}/frames` with `[{"seq", "keypoints", "scores"?}, …]` → `{"poses": […]}`."""
        body = {"frames": [{key: _plain(value) for key, value in frame.items()} for frame in frames]}
        result: dict[str, Any] = self.request("POST", f"/v1/sessions/{session_id}/frames", body)
        return result

    def session(self, session_id: str) -> dict[str, Any]:
        """`GET /v1/sessions/{id}`: last seq, frames seen, remaining lifetime."""
        result: dict[str, Any] = self.request("GET", f"/v1/sessions/{session_id}")
        return result

    def close_session(self, session_id: str) -> None:
        """`DELETE /v1/sessions/{id}`."""
        self.request("DELETE", f"/v1/sessions/{session_id}")

    def model(self) -> dict[str, Any]:
        """`GET /v1/model`: joints, window, checkpoint, reported accuracy."""
        result: dict[str, Any] = self.request("GET", "/v1/model")
        return result
