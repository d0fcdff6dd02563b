"""Settings come from CONVEYOR_* environment variables with defaults that work on one machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


def test_defaults_work_on_one_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CONVEYOR_KAFKA_PORT",
        "CONVEYOR_MINIO_PORT",
        "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS",
        "CONVEYOR_MINIO_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.s3_endpoint == "127.0.0.1:9000"


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_KAFKA_PORT", "19092")
    monkeypatch.setenv("CONVEYOR_MINIO_ENDPOINT", "minio:9000")
    monkeypatch.setenv("CONVEYOR_MINIO_SECRET_KEY", "s3cr3t-value")
    monkeypatch.setenv("CONVEYOR_RETRY_ATTEMPTS", "7")
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.s3_endpoint == "minio:9000"
    assert settings.retry_attempts == 7
    assert settings.state_dir == tmp_path
    assert settings.minio_secret_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)  # secrets never reach logs


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_KAFKA_PORT", "not-a-port")
    with pytest.raises(ValueError, match="kafka_port"):
        Settings()
