"""Settings: read from POSELIFT_* at start-up; invalid values fail with a message naming the variable."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from service.config import Settings, describe_error, redact_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No POSELIFT_* variable of the shell running the tests reaches these Settings."""
    for name in list(os.environ):
        if name.startswith("POSELIFT_"):
            monkeypatch.delenv(name)


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.redis_url == "" and settings.checkpoint == "tcn" and settings.device == "auto"
    assert (settings.http_port, settings.grpc_port, settings.session_ttl_s) == (8000, 50051, 300)
    assert settings.api_keys == ()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSELIFT_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("POSELIFT_API_KEYS", " first-key-123 , second-key-456,")
    monkeypatch.setenv("POSELIFT_HTTP_PORT", "9000")
    monkeypatch.setenv("POSELIFT_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POSELIFT_BATCH_WAIT_MS", "0.5")
    settings = Settings()
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.api_keys == ("first-key-123", "second-key-456")
    assert (settings.http_port, settings.log_level, settings.batch_wait_ms) == (9000, "warning", 0.5)
    assert "first-key" not in repr(settings)  # keys never end up in logs


def test_settings_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSELIFT_HTTP_PORT", "eighty")
    monkeypatch.setenv("POSELIFT_DEVICE", "tpu")
    monkeypatch.setenv("POSELIFT_REDIS_URL", "http://cache")
    monkeypatch.setenv("POSELIFT_API_KEYS", "short")
    monkeypatch.setenv("POSELIFT_SESSION_TTL_S", "0")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = describe_error(caught.value)
    for name in ("HTTP_PORT", "DEVICE", "REDIS_URL", "API_KEYS", "SESSION_TTL_S"):
        assert f"POSELIFT_{name}:" in message
    assert "short" not in message  # an API key is never echoed


def test_settings_invalid_redis_url_is_shown_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "POSELIFT_REDIS_URL", "http://lifter:hunter2-secret@cache:6379/0?password=other-secret"
    )
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = describe_error(caught.value)
    assert "POSELIFT_REDIS_URL:" in message and "cache:6379" in message
    assert "hunter2" not in message and "other-secret" not in message and "lifter" not in message


def test_settings_redact_url() -> None:
    assert redact_url("redis://:pw@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url("rediss://user:pw@cache/1") == "rediss://***@cache/1"
    assert redact_url("unix:///run/redis.sock?db=2&password=pw") == "unix:///run/redis.sock?db=2&password=***"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_settings_are_built_not_imported() -> None:
    import service.config

    assert not any(isinstance(value, Settings) for value in vars(service.config).values())
