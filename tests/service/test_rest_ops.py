"""Operations endpoints over real HTTP: health, readiness, metrics, model, OpenAPI docs."""

from __future__ import annotations

import httpx

from poselift import Lifter
from poselift.runtimes import resolve_backend
from tests.service.testkit import Clip, LiveServer, lift_rest, push_in_batches


def test_ops_health_ready_and_model(live: LiveServer, store_kind: str, lifter: Lifter) -> None:
    with httpx.Client(base_url=live.url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "store": store_kind}
        model = client.get("/v1/model").json()
    assert model["joints"] == list(lifter.joints) and len(model["joints"]) == 17
    assert model["window"] == lifter.window
    assert model["checkpoint_id"] == lifter.checkpoint_id
    assert model["kind"] == lifter.metadata["config"]["kind"]
    assert model["training_data"] == lifter.metadata.get("training_data")
    assert model["validation"] == lifter.metadata.get("validation")
    assert model["units"] == "mm"
    assert model["backend"] == lifter.backend == resolve_backend("auto", lifter.device)


def test_ops_metrics_count_routes_batches_and_sessions(live: LiveServer, clip: Clip) -> None:
    with httpx.Client(base_url=live.url) as client:
        lift_rest(client, clip)
        push_in_batches(client, clip, 20)
        client.get("/v1/sessions/does-not-exist-0123456789")
        text = client.get("/metrics").text
    assert 'poselift_requests_total{method="POST",route="/v1/lift",status="200"} 1.0' in text
    assert 'route="/v1/sessions/{session_id}/frames",status="200"} 3.0' in text
    assert 'route="/v1/sessions/{session_id}",status="404"} 1.0' in text
    assert "poselift_request_duration_seconds_bucket" in text
    assert "poselift_batch_windows_count" in text and "poselift_batch_requests_count" in text
    assert "poselift_queue_depth" in text and "poselift_store_errors_total" in text
    active = next(line for line in text.splitlines() if line.startswith("poselift_active_sessions "))
    assert float(active.split()[1]) >= 1


def test_ops_metrics_labels_come_from_fixed_sets(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        for k, method in enumerate(("PROPFIND", "PURGE", "LOCK")):  # one series for all, not one each
            client.request(method, "/v1/lift")
            client.get(f"/no/such/path-{k}")
        client.get("/openapi.json")
        text = client.get("/metrics").text
    assert 'poselift_requests_total{method="OTHER",route="/v1/lift",status="405"} 3.0' in text
    assert 'poselift_requests_total{method="GET",route="<unmatched>",status="404"} 3.0' in text
    assert 'poselift_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
    assert "PROPFIND" not in text and "/no/such" not in text


def test_ops_openapi_documents_routes_with_examples(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    paths = schema["paths"]
    for path, method in [
        ("/v1/lift", "post"), ("/v1/sessions", "post"), ("/v1/sessions/{session_id}/frames", "post"),
        ("/v1/sessions/{session_id}", "get"), ("/v1/sessions/{session_id}", "delete"), ("/healthz", "get"),
        ("/readyz", "get"), ("/metrics", "get"), ("/v1/model", "get"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
        assert paths[path][method]["description"] or paths[path][method]["summary"]
    components = schema["components"]["schemas"]
    for name in ("LiftRequest", "FramesRequest", "SessionCreate"):
        assert components[name]["examples"], name
    assert "409" in paths["/v1/sessions/{session_id}/frames"]["post"]["responses"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
