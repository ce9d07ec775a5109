"""Schemathesis over /openapi.json against a live server: generated requests, valid or not, never a 5xx.

Generated session ids name no session, so every frames push would stop at the 404 and the push validation
behind it would go untested: each generated push goes to a session opened for it instead.
"""

from __future__ import annotations

from collections import Counter

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from poselift import Lifter
from service.api import create_app
from tests.service.testkit import LiveServer, make_settings

EXAMPLES_PER_MODE = 100  # positive and negative: ~200 requests over all operations
FRAMES_PATH = "/v1/sessions/{session_id}/frames"
SESSION_CAMERA = {"layout": "h36m17", "width": 1920, "height": 1080, "fps": 30.0}


def test_openapi_fuzz_never_5xx(lifter: Lifter) -> None:
    pushes: Counter[int] = Counter()  # status -> count, of pushes to a real session
    with (
        LiveServer(create_app(make_settings(max_frames_per_request=64), lifter)) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=schema.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                real = case.operation.path == FRAMES_PATH
                if real:
                    created = client.post("/v1/sessions", json=SESSION_CAMERA)
                    assert created.status_code == 201, created.text
                    case.path_parameters = {"session_id": created.json()["session_id"]}
                response = case.call(base_url=live.url, timeout=30)
                assert response.status_code < 500, f"{case.as_curl_command()} -> {response.status_code}"
                if response.status_code >= 400 and response.content:
                    error = response.json()["error"]
                    assert error["code"] and error["message"]
                if real:
                    pushes[response.status_code] += 1

            check()
    assert pushes[404] == 0, pushes  # every push reached its session...
    assert pushes[200] > 0 and pushes[422] > 0, pushes  # ...and both lifted frames and refused bad ones
