"""Schemathesis over /openapi.json against a live server: generated requests, valid or not, never a 5xx.

Generated session ids name no session, so every frames push would stop at the 404 and the push validation
behind it would go untested: each generated push goes to a real session instead, a fresh one or one of a few
long-lived ones (which have history, so old seqs meet the seq checks). GETs and DELETEs go to a generated id,
a real session, or (with API keys) another key's session, which must look exactly like a missing one.

A short run is part of `make test`; the soak runs (`pytest -m soak`) send many more examples, over Redis.
Either ends by checking that the server still answers /healthz, lifts a clip exactly as the offline lifter
does, and continues a session opened before the fuzz as if nothing had happened in between.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from poselift import Lifter
from service.api import create_app
from tests.service.testkit import (
    TOLERANCE_MM,
    Clip,
    LiveServer,
    RedisServer,
    lift_rest,
    make_settings,
    push_in_batches,
)

SHORT_EXAMPLES_PER_MODE = 100  # positive and negative: ~200 requests over all operations, a few seconds
SOAK_EXAMPLES_PER_MODE = 1000  # 2,000 requests
FRAMES_PATH = "/v1/sessions/{session_id}/frames"
SESSION_PATH = "/v1/sessions/{session_id}"
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}  # answered without a key
SESSION_CAMERA = {"layout": "h36m17", "width": 1920, "height": 1080, "fps": 30.0}
KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789"
POOL = 3  # long-lived sessions per fuzz run
TARGETS = {  # where the requests of an operation on one session go, in turn (+ "foreign" with two keys)
    f"POST {FRAMES_PATH}": ("fresh", "pooled"),
    f"GET {SESSION_PATH}": ("pooled", "generated"),
    f"DELETE {SESSION_PATH}": ("fresh", "generated"),
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class FuzzRun:
    """What one fuzz run sent and got: (mode, METHOD path, target, status) -> count."""

    outcomes: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def examples(self) -> int:
        return sum(self.outcomes.values())

    def statuses(self, *targets: str, operation: str | None = None) -> Counter[int]:
        """Status counts of the requests to these targets (all if none) of `operation` (all if None)."""
        counts: Counter[int] = Counter()
        for (_, op, target, status), n in self.outcomes.items():
            if (not targets or target in targets) and (operation is None or op == operation):
                counts[status] += n
        return counts

    def report(self, title: str) -> str:
        lines = [f"{title}: {self.examples} examples in {self.seconds:.1f} s; status codes {self._sorted()}"]
        per_op: dict[str, Counter[int]] = {}
        for (_, op, tgt, status), n in self.outcomes.items():
            per_op.setdefault(f"{op} [{tgt}]", Counter())[status] += n
        lines += [f"  {op}: {dict(sorted(c.items()))}" for op, c in sorted(per_op.items())]
        return "\n".join(lines)

    def _sorted(self) -> dict[int, int]:
        return dict(sorted(self.statuses().items()))


def fuzz(
    url: str,
    examples_per_mode: int,
    key: str | None = None,
    foreign_key: str | None = None,
    keyless: bool = False,
    derandomize: bool = True,
) -> FuzzRun:
    """Generated requests to every operation of the live server at `url`, in both generation modes.

    Args:
        key: one of the server's keys (None: auth off): the real sessions are opened with it, and it is sent
            as `Authorization: Bearer` on every request unless `keyless`.
        foreign_key: another key of the server: some session requests go to a session it owns.
        keyless: the requests carry only what schemathesis generates (no key, or a random bearer token):
            every operation but the probes must be refused, the real sessions' too.
    """
    run = FuzzRun()
    headers = bearer(key) if key else {}
    turn = itertools.count()
    started = time.monotonic()
    with (
        httpx.Client(base_url=url, timeout=30, headers=headers) as client,
        httpx.Client(base_url=url, timeout=30, headers=bearer(foreign_key or "")) as foreigner,
    ):

        def open_session(by: httpx.Client) -> str:
            created = by.post("/v1/sessions", json=SESSION_CAMERA)
            assert created.status_code == 201, created.text
            return str(created.json()["session_id"])

        pool = [open_session(client) for _ in range(POOL)]
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")

        def send(case: schemathesis.Case, mode: str) -> None:
            path = case.operation.path
            operation = f"{case.method.upper()} {path}"
            target = "generated"
            if operation in TARGETS:
                n = next(turn)
                choices = TARGETS[operation] + (("foreign",) if foreign_key else ())
                target = choices[n % len(choices)]
                session_id = {
                    "fresh": lambda: open_session(client),
                    "pooled": lambda: pool[n % POOL],
                    "foreign": lambda: open_session(foreigner),
                    "generated": lambda: case.path_parameters["session_id"],
                }[target]()
                case.path_parameters = {"session_id": session_id}
            sent = headers if key and not keyless else None  # over whatever the case generated
            response = case.call(base_url=url, timeout=30, headers=sent)
            status = response.status_code
            curl = case.as_curl_command(headers=dict(response.request.headers))
            assert status < 500, f"{curl} -> {status} {response.text[:500]}"
            error = response.json()["error"] if status >= 400 and response.content else None
            if status >= 400 and response.content:
                assert error and error["code"] and error["message"], response.text
            if target in ("fresh", "pooled") and path == FRAMES_PATH and not keyless:
                assert status != 404, f"a push missed its real session: {curl} -> {response.text}"
            if target == "foreign":  # another key's session: never served, and never told apart
                assert status >= 400, f"{curl} -> {status}: another key's session was served"
                keyed = response.request.headers.get("Authorization") == headers["Authorization"]
                if path == SESSION_PATH and keyed:  # (negative cases may drop the key: then 401)
                    assert error and error["code"] == "session_not_found", (curl, response.text)
            if keyless and path not in PUBLIC_PATHS:
                assert status in (400, 401, 404), f"{curl} -> {status} without a valid key"
                if status == 404:  # a generated id that is no path segment: no route, not a session
                    assert error and error["code"] == "not_found", (curl, response.text)
            run.outcomes[(mode, operation, target, status)] += 1

        def fuzz_mode(mode: GenerationMode) -> None:
            @given(case=schema.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples_per_mode,
                deadline=None,
                derandomize=derandomize,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                send(case, mode.value)

            check()

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_mode(mode)
    run.seconds = time.monotonic() - started
    return run


def assert_still_serving(
    client: httpx.Client, lifter: Lifter, clip: Clip, session_id: str, half: int, head: np.ndarray
) -> None:
    """/healthz answers, a clip lifts as offline, and the session opened before the fuzz (its first `half`
    frames pushed, giving `head`) continues exactly as offline lifting of the whole clip."""
    assert client.get("/healthz").status_code == 200
    offline = lifter.lift(clip.keypoints_px, clip.width, clip.height, clip.fps)
    np.testing.assert_allclose(lift_rest(client, clip), offline, rtol=0, atol=TOLERANCE_MM)
    _, tail = push_in_batches(client, clip, 4, session_id=session_id, start=half)
    np.testing.assert_allclose(np.concatenate([head, tail]), offline, rtol=0, atol=TOLERANCE_MM)


def fuzz_around_a_session(
    url: str,
    lifter: Lifter,
    clip: Clip,
    examples_per_mode: int,
    key: str | None = None,
    foreign_key: str | None = None,
    derandomize: bool = True,
) -> FuzzRun:
    """Open a session and push half the clip, fuzz, then check the server and the session (see above)."""
    half = len(clip.keypoints_px) // 2 + 1
    with httpx.Client(base_url=url, timeout=30, headers=bearer(key) if key else {}) as client:
        session_id, head = push_in_batches(client, clip, 5, stop=half)
        run = fuzz(url, examples_per_mode, key, foreign_key, derandomize=derandomize)
        assert_still_serving(client, lifter, clip, session_id, half, head)
    return run


def check_pushes(run: FuzzRun) -> None:
    pushes = run.statuses("fresh", "pooled", operation=f"POST {FRAMES_PATH}")
    assert pushes[404] == 0, pushes  # every push reached its session...
    assert pushes[200] > 0 and pushes[422] > 0, pushes  # ...and both lifted frames and refused bad ones


def assert_nothing_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No error was logged by the server: hostile input is the client's problem, never the server's."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_openapi_fuzz_never_5xx(lifter: Lifter, clip: Clip, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(max_frames_per_request=64)
    with LiveServer(create_app(settings, lifter)) as live:
        run = fuzz_around_a_session(live.url, lifter, clip, SHORT_EXAMPLES_PER_MODE)
    print("\n" + run.report("openapi fuzz, memory store"))
    assert run.examples == 2 * SHORT_EXAMPLES_PER_MODE
    check_pushes(run)
    assert_nothing_logged(caplog)


def test_openapi_fuzz_api_keys(lifter: Lifter, clip: Clip, caplog: pytest.LogCaptureFixture) -> None:
    """With keys: no key or a generated one is refused everywhere but the probes; with a key, another
    key's sessions answer like missing ones."""
    settings = make_settings(max_frames_per_request=64, api_keys=(KEY_A, KEY_B))
    with LiveServer(create_app(settings, lifter)) as live:
        keyless = fuzz(live.url, SHORT_EXAMPLES_PER_MODE // 2, KEY_A, keyless=True)
        keyed = fuzz_around_a_session(
            live.url, lifter, clip, SHORT_EXAMPLES_PER_MODE // 2, KEY_A, foreign_key=KEY_B
        )
    print("\n" + keyless.report("openapi fuzz, keys configured, none or a generated one sent"))
    print(keyed.report("openapi fuzz, keys configured, a valid key sent"))
    protected = [s for (_, op, _, s) in keyless.outcomes if op.split()[1] not in PUBLIC_PATHS]
    assert 401 in protected and not any(200 <= s < 300 for s in protected)
    assert keyed.statuses("foreign")[404] > 0
    check_pushes(keyed)
    assert_nothing_logged(caplog)


@pytest.mark.soak
def test_openapi_fuzz_soak_redis(
    redis_server: RedisServer, lifter: Lifter, clip: Clip, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(redis_url=redis_server.url, max_frames_per_request=64)
    with LiveServer(create_app(settings, lifter)) as live:
        run = fuzz_around_a_session(live.url, lifter, clip, SOAK_EXAMPLES_PER_MODE, derandomize=False)
    print("\n" + run.report("openapi soak, redis store"))
    assert run.examples == 2 * SOAK_EXAMPLES_PER_MODE
    check_pushes(run)
    assert_nothing_logged(caplog)


@pytest.mark.soak
def test_openapi_fuzz_soak_api_keys_redis(
    redis_server: RedisServer, lifter: Lifter, clip: Clip, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(redis_url=redis_server.url, max_frames_per_request=64, api_keys=(KEY_A, KEY_B))
    examples = SOAK_EXAMPLES_PER_MODE // 4
    with LiveServer(create_app(settings, lifter)) as live:
        keyless = fuzz(live.url, examples, KEY_A, keyless=True, derandomize=False)
        keyed = fuzz_around_a_session(
            live.url, lifter, clip, examples, KEY_A, foreign_key=KEY_B, derandomize=False
        )
    print("\n" + keyless.report("openapi soak, keys configured, none or a generated one sent"))
    print(keyed.report("openapi soak, keys configured, a valid key sent"))
    assert keyed.statuses("foreign")[404] > 0
    check_pushes(keyed)
    assert_nothing_logged(caplog)
