"""Schemathesis over /openapi.json against a live server: generated requests, valid or not, never a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from service_testkit import LiveServer, make_settings

from poselift import Lifter
from service.api import create_app

EXAMPLES_PER_MODE = 90  # positive and negative: ~180 requests over all operations


def test_openapi_fuzz_never_5xx(lifter: Lifter) -> None:
    with LiveServer(create_app(make_settings(max_frames_per_request=64), lifter)) as live:
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
                response = case.call(base_url=live.url, timeout=30)
                assert response.status_code < 500, f"{case.as_curl_command()} -> {response.status_code}"
                if response.status_code >= 400 and response.content:
                    error = response.json()["error"]
                    assert error["code"] and error["message"]

            check()
