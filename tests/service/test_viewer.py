"""The /viewer page end to end: Debian's chromium, driven by Playwright, on a running `poselift serve` with
API keys on. A val clip seen through the evaluation rig is dropped on the page, lifted through /v1/lift with
the key typed into the page, played and scrubbed; the joints the page gives three.js and the 2D canvas are
compared with the API's poses. The screenshot is kept in `test-artifacts/viewer.png`
(`$POSELIFT_TEST_ARTIFACTS` overrides the folder).

Playwright's own browser download fails here, so it launches Debian's `chromium` (`make setup` installs it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from poselift.geometry import default_focal_px, look_at_rotation, project_to_2d, world_to_camera
from poselift.poses_file import Poses, load_poses_file, save_poses_file
from poselift.skeleton import H36M17_JOINTS, H36M17_PARENTS
from tests.service.testkit import CHECKPOINT, TOLERANCE_MM, VAL_DATA, free_port
from trainer import rig
from trainer.mocap import Mocap

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup)")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("POSELIFT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
KEY = "viewer-test-key-0123"
SEGMENT, FRAMES = 12, 60  # "soccer - kick ball" of the val split, 2 s at 30 fps
TOLERANCE_M = TOLERANCE_MM / 1000

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed (make system-tools)"
)


def rig_clip() -> tuple[dict[str, Any], np.ndarray]:
    """The val segment through the rig's first camera -> (the /v1/lift body, true pelvis (T, 3) camera mm)."""
    world = Mocap.load(VAL_DATA).segment(SEGMENT)[:FRAMES].astype(np.float64)  # (T, 17, 3) mm, Z up
    centre = world[:, 0].mean(axis=0)
    aim = np.array([centre[0], centre[1], rig.AIM_HEIGHT_MM])
    az, el = np.deg2rad(rig.AZIMUTHS_DEG[0]), np.deg2rad(rig.ELEVATION_DEG)
    position = aim + rig.DISTANCE_MM * np.array(
        [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
    )
    camera = world_to_camera(world, look_at_rotation(position, aim), position)  # (T, 17, 3)
    keypoints = project_to_2d(camera, rig.FOCAL_PX, (rig.WIDTH_PX / 2, rig.HEIGHT_PX / 2))
    body = {"layout": "h36m17", "width": rig.WIDTH_PX, "height": rig.HEIGHT_PX, "fps": 30.0,
            "keypoints": keypoints.tolist()}  # fmt: skip
    return body, camera[:, 0]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`poselift serve` with API keys on, on free loopback ports, in-process sessions."""
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if not k.startswith("POSELIFT_") or k == "POSELIFT_CACHE_DIR"}
    env = {**keep, "POSELIFT_CHECKPOINT": CHECKPOINT, "POSELIFT_HOST": "127.0.0.1",
           "POSELIFT_HTTP_PORT": str(port), "POSELIFT_GRPC_PORT": str(free_port()),
           "POSELIFT_TORCH_THREADS": "1", "POSELIFT_API_KEYS": KEY,
           # torch runs the checkpoint as it is: no ONNX export at start-up (the page does not care which
           # backend answers; the other service tests cover the backends)
           "POSELIFT_BACKEND": "torch"}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "poselift.cli", "serve"]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 300  # generous: start-up is slow on a busy 2-core machine
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"poselift serve exited: {log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "poselift serve did not become ready"
                time.sleep(0.2)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Browser:
    """One page in a fresh chromium profile; remembers page errors and every URL the page asked for."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def open(self, url: str) -> None:
        self.page.goto(f"{url}/viewer")
        self.page.wait_for_function("window.viewerState && window.viewerState.ready === true")

    def drop(self, name: str, text: str) -> dict[str, Any]:
        """Drop a file on the page as a person would; wait until it is shown or refused -> viewerState."""
        loads = self.page.evaluate("window.viewerState.loads")
        self.page.evaluate(
            """([name, text]) => {
                window.viewerState.error = null;
                const data = new DataTransfer();
                data.items.add(new File([text], name, {type: 'application/json'}));
                const drop = new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true});
                document.getElementById('drop').dispatchEvent(drop);
            }""",
            [name, text],
        )
        self.page.wait_for_function(
            "([n]) => window.viewerState.loads > n || window.viewerState.error !== null", arg=[loads]
        )
        return self.state()

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.page.evaluate(
            """() => { const s = window.viewerState; return {frame: s.frame, numFrames: s.numFrames,
                playing: s.playing, fps: s.fps, source: s.source, error: s.error, poses: s.poses,
                trajectory: s.trajectory, skeleton: s.skeleton, drawn: s.drawn()}; }"""
        )
        return state

    def scrub(self, frame: int) -> dict[str, Any]:
        self.page.locator("#scrub").fill(str(frame))
        self.page.wait_for_function("([f]) => window.viewerState.frame === f", arg=[frame])
        return self.state()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="poselift-chromium-")
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 720},
            )  # fmt: skip
            context.set_default_timeout(90_000)  # a hang guard; a busy 2-core machine is slow
            try:
                yield Browser(context.new_page())
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def clip() -> tuple[dict[str, Any], np.ndarray]:
    return rig_clip()


def lift(server: str, body: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The API's answer for `body` -> (poses (T, 17, 3) mm, trajectory (T, 3) mm or None)."""
    response = httpx.post(
        f"{server}/v1/lift", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    trajectory = response.json().get("trajectory")
    return np.asarray(response.json()["poses"]), None if trajectory is None else np.asarray(trajectory)


def placed(poses_mm: np.ndarray, trajectory_mm: np.ndarray | None, frame: int) -> np.ndarray:
    """Where the viewer puts frame `frame`'s joints (17, 3), camera mm: along the trajectory if known."""
    if trajectory_mm is None or not np.any(trajectory_mm):
        return poses_mm[frame]
    return poses_mm[frame] + trajectory_mm[frame] - trajectory_mm[0]


def to_display_m(points_mm: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward) mm -> the viewer's display frame (y up, -z forward) m."""
    return points_mm * np.array([1.0, -1.0, -1.0]) / 1000


def assert_drawn(state: dict[str, Any], expected_mm: np.ndarray) -> None:
    """The page gave three.js exactly `expected_mm` (17, 3): as joints, and as the ends of each bone."""
    drawn = state["drawn"]
    expected = to_display_m(expected_mm)
    np.testing.assert_allclose(np.asarray(drawn["joints"]), expected, rtol=0, atol=TOLERANCE_M)
    bones = np.asarray(drawn["bones"])  # (16, 2, 3): (parent, child) of joints 1..16
    np.testing.assert_allclose(bones[:, 0], expected[list(H36M17_PARENTS[1:])], rtol=0, atol=TOLERANCE_M)
    np.testing.assert_allclose(bones[:, 1], expected[1:], rtol=0, atol=TOLERANCE_M)


def test_viewer_vendored_files_match_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "web" / "viewer" / "vendor.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_viewer_page_loads_without_a_key_and_fetches_nothing_from_elsewhere(
    server: str, browser: Browser
) -> None:
    assert httpx.post(f"{server}/v1/lift", json={}).status_code == 401  # keys are on
    page = httpx.get(f"{server}/viewer/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert httpx.get(f"{server}/viewer/vendor/three/three.module.js").status_code == 200
    assert httpx.get(f"{server}/viewer/no-such-file.js").status_code == 404

    before = len(browser.requests)
    browser.open(server)
    state = browser.state()
    assert state["skeleton"] == {"joints": list(H36M17_JOINTS), "parents": list(H36M17_PARENTS)}
    assert state["numFrames"] == 0 and state["error"] is None
    asked = browser.requests[before:]
    assert f"{server}/viewer/vendor/three/three.core.js" in asked
    assert all(url.startswith(f"{server}/viewer") for url in asked), asked
    assert browser.errors == []


def test_viewer_shows_the_apis_401_without_the_right_key(
    server: str, browser: Browser, clip: tuple[dict[str, Any], np.ndarray]
) -> None:
    browser.open(server)
    text = json.dumps(clip[0])
    for typed in ("", "not-the-key-123"):
        browser.page.fill("#api-key", typed)
        headers = {"Authorization": f"Bearer {typed}"} if typed else {}
        refused = httpx.post(f"{server}/v1/lift", json=clip[0], headers=headers)
        assert refused.status_code == 401
        state = browser.drop("clip.json", text)
        assert state["error"] == f"POST /v1/lift: 401 {refused.json()['error']['message']}"
        assert browser.page.locator("#status.error").inner_text() == state["error"]
        assert state["numFrames"] == 0
    assert browser.errors == []


def test_viewer_plays_and_scrubs_the_lifted_clip_drawing_the_apis_poses(
    server: str, browser: Browser, clip: tuple[dict[str, Any], np.ndarray], tmp_path: Path
) -> None:
    body = clip[0]
    expected, trajectory = lift(server, body)  # (T, 17, 3), (T, 3) | None
    browser.open(server)
    browser.page.fill("#api-key", KEY)
    state = browser.drop("clip.json", json.dumps(body))
    assert state["error"] is None, state["error"]
    assert state["source"] == "/v1/lift" and state["numFrames"] == FRAMES and state["fps"] == 30.0
    np.testing.assert_allclose(np.asarray(state["poses"]), expected, rtol=0, atol=TOLERANCE_MM)
    if trajectory is not None:
        np.testing.assert_allclose(np.asarray(state["trajectory"]), trajectory, rtol=0, atol=TOLERANCE_MM)

    # It plays by itself: the frame moves on, and every frame shown is drawn.
    assert state["playing"]
    browser.page.wait_for_function("window.viewerState.frame >= 5")
    browser.page.click("#play")  # pause
    paused = browser.state()
    assert not paused["playing"]
    assert_drawn(paused, placed(expected, trajectory, paused["frame"]))

    # Scrubbing shows exactly the frame asked for, in 3D and in 2D.
    for frame in (FRAMES - 1, 37, 0, 37):
        state = browser.scrub(frame)
        assert not state["playing"]
        assert_drawn(state, placed(expected, trajectory, frame))
    size = browser.page.evaluate("[view2d.width, view2d.height]")
    scale = min(size[0] / body["width"], size[1] / body["height"])
    offset = (np.asarray(size) - scale * np.array([body["width"], body["height"]])) / 2
    keypoints = np.asarray(body["keypoints"][37])
    np.testing.assert_allclose(
        np.asarray(state["drawn"]["keypoints2d"]), offset + scale * keypoints, atol=1e-6
    )
    label = browser.page.locator("#frame-label").inner_text()
    assert label.startswith(f"frame 38 / {FRAMES}")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.page.screenshot(path=str(ARTIFACTS / "viewer.png"))
    # The skeleton is on screen: the 3D view shows its left (blue) and right (orange) sides.
    pixels = np.asarray(Image.open(io.BytesIO(browser.page.locator("#view3d").screenshot())).convert("RGB"))
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    assert np.count_nonzero(blue - red > 80) > 50 and np.count_nonzero(red - blue > 80) > 50

    # "Save poses file" downloads what poselift's own reader takes, holding what was lifted.
    with browser.page.expect_download() as download:
        browser.page.click("#save")
    assert download.value.suggested_filename == "clip.poses.json"
    download.value.save_as(tmp_path / "clip.poses.json")
    saved = load_poses_file(tmp_path / "clip.poses.json")
    np.testing.assert_allclose(saved.poses_mm, expected, rtol=0, atol=TOLERANCE_MM)
    np.testing.assert_array_equal(saved.keypoints_px, np.asarray(body["keypoints"]))
    assert (saved.fps, saved.width, saved.height) == (30.0, body["width"], body["height"])
    assert saved.focal_px == pytest.approx(default_focal_px(body["width"], body["height"]), rel=1e-12)
    if trajectory is not None:
        np.testing.assert_allclose(saved.trajectory_mm, trajectory, rtol=0, atol=TOLERANCE_MM)
    assert browser.errors == []


def test_viewer_shows_a_poses_file_along_its_trajectory(
    server: str, browser: Browser, clip: tuple[dict[str, Any], np.ndarray], tmp_path: Path
) -> None:
    body, pelvis_mm = clip
    poses_mm = lift(server, body)[0]
    keypoints = np.asarray(body["keypoints"])
    keypoints[45, 13] = np.nan  # an unseen left wrist: null in the JSON, not drawn
    T = len(poses_mm)
    poses = Poses(
        fps=25.0, width=body["width"], height=body["height"], focal_px=rig.FOCAL_PX, keypoints_px=keypoints,
        scores=np.ones((T, 17)), poses_mm=poses_mm, trajectory_mm=pelvis_mm, visible=np.ones(T),
        frame_index=np.arange(T) + 100,
    )  # fmt: skip
    save_poses_file(tmp_path / "clip.poses.json", poses)
    browser.open(server)  # no key: a poses file is shown as it is, nothing is sent
    before = len(browser.requests)
    state = browser.drop("clip.poses.json", (tmp_path / "clip.poses.json").read_text())
    assert state["error"] is None, state["error"]
    assert state["source"] == "poses file" and state["numFrames"] == T and state["fps"] == 25.0
    assert browser.requests[before:] == []
    for frame in (0, 45):
        state = browser.scrub(frame)
        assert_drawn(state, placed(poses_mm, pelvis_mm, frame))
    drawn2d = state["drawn"]["keypoints2d"]
    assert drawn2d[13] is None and all(point is not None for j, point in enumerate(drawn2d) if j != 13)
    assert "video frame 145" in browser.page.locator("#frame-label").inner_text()
    assert browser.errors == []


def test_viewer_live_session_gives_the_lifts_poses(
    server: str, browser: Browser, clip: tuple[dict[str, Any], np.ndarray]
) -> None:
    body = clip[0]
    expected, trajectory = lift(server, body)
    browser.open(server)
    browser.page.fill("#api-key", KEY)
    browser.page.check("#live")
    state = browser.drop("clip.json", json.dumps(body))
    assert state["error"] is None, state["error"]
    browser.page.wait_for_function(
        "window.viewerState.live.done || window.viewerState.error !== null", timeout=120_000
    )
    state = browser.state()
    assert state["error"] is None, state["error"]
    assert state["source"] == "live session" and state["numFrames"] == FRAMES
    np.testing.assert_allclose(np.asarray(state["poses"]), expected, rtol=0, atol=TOLERANCE_MM)
    if trajectory is not None:  # the sessions' `root` of each pose
        np.testing.assert_allclose(np.asarray(state["trajectory"]), trajectory, rtol=0, atol=TOLERANCE_MM)
    assert_drawn(browser.scrub(20), placed(np.asarray(state["poses"]), trajectory, 20))
    assert browser.errors == []


def test_viewer_bad_files_are_clear_errors(
    server: str, browser: Browser, clip: tuple[dict[str, Any], np.ndarray]
) -> None:
    browser.open(server)
    browser.page.fill("#api-key", KEY)
    short = {**clip[0], "keypoints": [frame[:16] for frame in clip[0]["keypoints"][:3]]}
    refused = httpx.post(f"{server}/v1/lift", json=short, headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 422
    for name, text, message in (
        ("notes.txt", "not json {", "notes.txt is not JSON"),
        ("list.json", "[1, 2]", "list.json is not a JSON object"),
        ("other.json", '{"frames": []}', 'other.json is neither a /v1/lift body ("keypoints")'),
        ("poses.json", '{"poses_mm": [[[1, 2]]]}', '"poses_mm" must be a non-empty (T, 17, 3)'),
        ("short.json", json.dumps(short), f"POST /v1/lift: 422 {refused.json()['error']['message']}"),
    ):
        state = browser.drop(name, text)
        assert state["error"] is not None and state["error"].startswith(message), (name, state["error"])
    assert browser.errors == []
