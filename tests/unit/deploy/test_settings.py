"""Deploy settings: CONVEYOR_* variables, defaults for one machine, and what servers inherit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.deploy.settings import DeploySettings
from services.deploy.workers import (
    SERVICE,
    server_environment,
    server_home,
    settings_environment,
    worker_command,
)


def test_defaults_work_on_one_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [name for name in os.environ if name.startswith("CONVEYOR_")]:
        monkeypatch.delenv(name)  # the defaults, whatever the shell running the tests exports
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path))
    settings = DeploySettings()
    assert (settings.deploy_port, settings.environment, settings.serving_workers) == (8100, "production", 1)
    assert settings.deploy_base_url == "http://127.0.0.1:8100"
    assert settings.serving_ports == range(8200, 8300)
    assert settings.bentoml_home == tmp_path / "bentoml"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "staging")
    monkeypatch.setenv("CONVEYOR_SERVING_WORKERS", "3")
    monkeypatch.setenv("CONVEYOR_CAPTURE_SAMPLE_RATE", "0.1")
    monkeypatch.setenv("CONVEYOR_SERVING_ADVERTISED_HOST", "models.internal")
    settings = DeploySettings()
    assert (settings.environment, settings.serving_workers, settings.capture_sample_rate) == (
        "staging",
        3,
        0.1,
    )
    assert settings.advertised_host == "models.internal"
    with pytest.raises(ValueError):
        DeploySettings(capture_sample_rate=1.5)


def test_servers_inherit_the_settings_and_never_phone_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = DeploySettings(
        state_dir=tmp_path, kafka_port=19092, minio_secret_key=SecretStr("s3cr3t"), capture_sample_rate=0.5
    )
    env = server_environment(settings)
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    assert env["BENTOML_HOME"] == str(tmp_path / "bentoml")
    assert env["CONVEYOR_KAFKA_PORT"] == "19092" and env["CONVEYOR_CAPTURE_SAMPLE_RATE"] == "0.5"
    assert "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS" not in env  # unset stays unset, not "None"
    # Servers read models from the local store: they never get the object store's keys.
    assert not {"CONVEYOR_MINIO_SECRET_KEY", "CONVEYOR_MINIO_ACCESS_KEY", "CONVEYOR_API_TOKENS"} & set(env)
    assert settings_environment(settings)["CONVEYOR_MINIO_SECRET_KEY"] == "s3cr3t"


def test_each_server_has_a_home_of_its_own_sharing_the_model_store(tmp_path: Path) -> None:
    settings = DeploySettings(state_dir=tmp_path)
    home = server_home(settings, "server-churn-v2-4242")
    assert (home / "models").resolve() == (settings.bentoml_home / "models").resolve()
    assert server_home(settings, "server-churn-v2-4242") == home  # idempotent
    assert server_environment(settings, home=home)["BENTOML_HOME"] == str(home)


def test_a_server_home_starts_with_empty_metrics_files_its_workers_share(tmp_path: Path) -> None:
    settings = DeploySettings(state_dir=tmp_path)
    home = server_home(settings, "server-churn-v2-4242")
    (home / "prometheus_multiproc_dir" / "counter_1.db").write_bytes(b"left by an earlier run")
    home = server_home(settings, "server-churn-v2-4242")
    assert list((home / "prometheus_multiproc_dir").iterdir()) == []
    env = server_environment(settings, home=home)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(home / "prometheus_multiproc_dir")


def test_a_worker_serves_the_service_on_the_socket_it_inherits() -> None:
    argv = worker_command(fd=7, worker_id=2, arguments={"model_tag": "churn:v2", "workers": "2"})
    assert argv[1:4] == ["-m", "_bentoml_impl.worker.service", SERVICE]
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert options["--fd"] == "7" and options["--worker-id"] == "2"
    assert options["--args"] == '{"model_tag": "churn:v2", "workers": "2"}'


def test_bentomls_worker_entry_point_takes_what_workers_and_spares_give_it() -> None:
    """BentoML's worker module is private: an upgrade that changes it must fail here, not in serving."""
    import importlib

    import click

    from services.deploy.workers import BENTOML_WORKER

    command = importlib.import_module(BENTOML_WORKER).main
    assert isinstance(command, click.Command)
    options = {name for parameter in command.params for name in parameter.opts}
    argv = worker_command(fd=7, worker_id=2, arguments={"model_tag": "churn:v2"})
    assert {arg for arg in argv if arg.startswith("--")} <= options
    assert {"--fd", "--worker-id", "--args", "--timeout-keep-alive"} <= options


def test_a_spare_preloads_nothing_that_reads_the_endpoints_environment() -> None:
    """prometheus_client fixes its metrics directory at import: a spare must not have imported it."""
    import subprocess
    import sys

    code = (
        "import sys; from services.deploy.serving.spare import preload; preload(); "
        "print([m for m in ('prometheus_client', 'services.deploy.serving.service') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
