"""What can be checked of the deployment without a Docker engine: the compose files against the Compose
Specification's JSON schema, their wiring, the balancer config with nginx's own `nginx -t`, the Dockerfile.
(test_failover runs the same topology on loopback; `poselift serve` is started there as the image's CMD.)"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.service.rpc.rpckit import ROOT, Nginx, compose_file, image_command, interpolate, nginx_binary

COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "deploy" / "compose.gpu.yml"]


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's schema, as vendored by check-jsonschema (a dev dependency)."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return dict(json.loads(vendored.read_text()))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_deploy_compose_files_match_the_compose_spec(path: Path) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = yaml.safe_load(path.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors
    broken = copy.deepcopy(document)  # the schema is strict enough to notice a typo
    next(iter(broken["services"].values()))["depend_on"] = ["redis"]
    assert not validator.is_valid(broken)


def test_deploy_compose_wiring() -> None:
    services = compose_file()["services"]
    redis, lifter, balancer, train = (services[name] for name in ("redis", "lifter", "balancer", "train"))
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert lifter["deploy"]["replicas"] >= 2
    assert lifter["depends_on"]["redis"]["condition"] == "service_healthy"
    assert interpolate(lifter["environment"]["POSELIFT_REDIS_URL"]) == "redis://redis:6379/0"
    assert lifter["healthcheck"]["test"] == ["CMD", *_healthcheck_command()]
    assert {"8000", "50051"} <= set(lifter["expose"])
    assert balancer["depends_on"]["lifter"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in balancer["volumes"]
    assert [interpolate(p) for p in balancer["ports"]] == ["8000:8000", "50051:50051"]
    assert train["profiles"] == ["train"] and train["command"][:2] == ["poselift", "train"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)


def test_deploy_nginx_config_passes_nginx_t() -> None:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (make setup installs it where apt-get can)")
    checked = Nginx(binary, [(18000, 18500), (18001, 18501)]).check()  # addresses only: nothing runs
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


def _healthcheck_command() -> list[str]:
    joined = dockerfile().replace("\\\n", " ")  # continuation lines as one
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", joined, flags=re.MULTILINE)
    assert match, "the Dockerfile has no HEALTHCHECK ... CMD [...]"
    return list(json.loads(match.group(1)))


def test_deploy_dockerfile() -> None:
    text = dockerfile()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim", text, flags=re.MULTILINE)
    assert re.search(
        r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, flags=re.MULTILINE
    )
    assert "FROM ${BASE_IMAGE}" in lines

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    # Dependencies are installed from pyproject.toml alone, before any source is copied (a cached layer).
    assert first("COPY pyproject.toml") < first("RUN pip install") < first("COPY poselift")
    assert first("COPY poselift") < first("USER ") < first("CMD ")
    user = lines[first("USER ")].split()[1]
    assert user not in ("root", "0")
    assert "EXPOSE 8000 50051" in lines
    assert _healthcheck_command() == ["python", "-m", "service.healthcheck"]
    assert image_command() == ["poselift", "serve"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists() and source not in ignored, source
