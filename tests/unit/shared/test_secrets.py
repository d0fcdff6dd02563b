"""Local secrets: random on first use, owner-only, read where no variable is set; refused if well known."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.secrets import (
    WELL_KNOWN_TOKEN,
    WellKnownSecretRefused,
    approver_token,
    ensure_local_secrets,
    refuse_well_known,
    secrets_path,
    with_local_secrets,
)
from shared.settings import Settings


@pytest.fixture(autouse=True)
def no_secret_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "API_TOKENS", "API_TOKEN", "STATE_DIR"):
        monkeypatch.delenv(f"CONVEYOR_{name}", raising=False)


def test_generated_once_random_and_readable_by_the_owner_only(tmp_path: Path) -> None:
    first = ensure_local_secrets(tmp_path)
    assert stat.S_IMODE(secrets_path(tmp_path).stat().st_mode) == 0o600
    assert ensure_local_secrets(tmp_path) == first  # kept, not regenerated
    other = ensure_local_secrets(tmp_path / "other")
    assert other.approver_token != first.approver_token
    assert other.minio_secret_key != first.minio_secret_key
    assert len(first.approver_token.get_secret_value()) >= 40


def test_settings_read_the_file_of_their_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings(state_dir=tmp_path).minio_secret_key.get_secret_value() == "conveyor-local-dev-secret"
    values = ensure_local_secrets(tmp_path)
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.minio_access_key == values.minio_access_key
    assert settings.minio_secret_key == values.minio_secret_key
    assert approver_token(settings) == values.approver_token.get_secret_value()
    assert values.approver_token.get_secret_value() in settings.api_tokens.get_secret_value()
    assert values.approver_token.get_secret_value() not in repr(settings)


def test_a_variable_always_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_local_secrets(tmp_path)
    monkeypatch.setenv("CONVEYOR_MINIO_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("CONVEYOR_API_TOKEN", "mine")
    settings = Settings(state_dir=tmp_path)
    assert settings.minio_secret_key.get_secret_value() == "from-the-environment"
    assert approver_token(settings) == "mine"


def test_with_local_secrets_fills_only_what_nothing_set(tmp_path: Path) -> None:
    settings = with_local_secrets(Settings(state_dir=tmp_path, minio_access_key="explicit"))
    values = ensure_local_secrets(tmp_path)
    assert settings.minio_access_key == "explicit"
    assert settings.minio_secret_key == values.minio_secret_key


def test_no_file_no_token(tmp_path: Path) -> None:
    assert approver_token(Settings(state_dir=tmp_path)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "registry.internal", "::"])
def test_well_known_secrets_are_refused_beyond_loopback(tmp_path: Path, host: str) -> None:
    defaults = Settings(state_dir=tmp_path)
    with pytest.raises(WellKnownSecretRefused, match=f"registry refuses to listen on {host}"):
        refuse_well_known(defaults, service="registry", hosts=[host])
    only_token = defaults.model_copy(update={"minio_secret_key": SecretStr("a-real-one")})
    with pytest.raises(WellKnownSecretRefused, match="CONVEYOR_API_TOKENS"):
        refuse_well_known(only_token, service="registry", hosts=[host])
    assert WELL_KNOWN_TOKEN not in str(only_token)
    refuse_well_known(with_local_secrets(defaults), service="registry", hosts=[host])  # random: fine


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_well_known_secrets_are_fine_on_loopback(tmp_path: Path, host: str) -> None:
    refuse_well_known(Settings(state_dir=tmp_path), service="registry", hosts=[host])
