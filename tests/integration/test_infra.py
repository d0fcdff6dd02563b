"""infra starts, restarts and stops real Kafka and MinIO processes, keeping their data.

Runs its own servers, in a temporary state directory on free ports, so it neither uses nor
disturbs servers left running by `make up`.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio import Minio

import infra
from infra.process import pid_alive
from shared.settings import Settings

pytestmark = pytest.mark.infra


def _free_port() -> int:
    """A port nothing listens on now, so a concurrent run on the fixed test ports cannot collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for servers of this module only: a fresh state directory and unused ports."""
    return Settings(
        state_dir=tmp_path_factory.mktemp("state"),
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
        kafka_bootstrap_servers=None,
        minio_port=_free_port(),
        minio_console_port=_free_port(),
        minio_endpoint=None,
        use_docker=False,
    )


@pytest.fixture(scope="module")
def running(infra_settings: Settings) -> Iterator[Settings]:
    """Both servers up for the module; stopped afterwards whatever happened."""
    try:
        yield infra.up(infra_settings)  # with the secrets generated for the new state directory
    finally:
        infra.down(infra_settings)


def _pids(settings: Settings) -> dict[str, int | None]:
    return {entry.name: entry.pid for entry in infra.status(settings)}


def _minio(settings: Settings) -> Minio:
    return Minio(
        settings.s3_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key.get_secret_value(),
        secure=False,
    )


async def _topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def _create_topic(settings: Settings, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def test_up_starts_both_servers_and_they_answer(running: Settings) -> None:
    assert infra.kafka_ready(running)
    assert infra.minio_ready(running)
    statuses = infra.status(running)
    assert [entry.name for entry in statuses] == ["kafka", "minio"]
    assert all(entry.healthy and entry.pid is not None for entry in statuses)
    state = running.state_dir
    assert (state / "logs" / "kafka.log").stat().st_size > 0
    assert (state / "logs" / "minio.log").stat().st_size > 0


def test_up_again_keeps_the_running_servers(running: Settings) -> None:
    before = _pids(running)

    infra.up(running)

    assert _pids(running) == before


async def test_kafka_restart_keeps_its_topics(running: Settings) -> None:
    topic = f"conveyor.test.infra.{uuid.uuid4().hex[:12]}"
    await _create_topic(running, topic)

    assert infra.stop_kafka(running)
    assert not infra.kafka_ready(running)
    infra.start_kafka(running)

    assert topic in await _topics(running)


def test_minio_restart_keeps_its_buckets(running: Settings) -> None:
    bucket = f"test-infra-{uuid.uuid4().hex[:12]}"
    _minio(running).make_bucket(bucket)

    assert infra.stop_minio(running)
    assert not infra.minio_ready(running)
    infra.start_minio(running)

    assert _minio(running).bucket_exists(bucket)


def test_a_stale_pidfile_is_cleaned(infra_settings: Settings, tmp_path: Path) -> None:
    settings = infra_settings.model_copy(update={"state_dir": tmp_path})
    pidfile = tmp_path / "run" / "kafka.pid"
    pidfile.parent.mkdir()
    pidfile.write_text("999999999\n")  # above any Linux pid_max: certainly not a live process

    assert _pids(settings)["kafka"] is None
    assert not pidfile.exists()


def test_down_stops_both_servers(running: Settings) -> None:
    pids = _pids(running)
    assert None not in pids.values()

    infra.down(running)

    assert not any(pid_alive(pid) for pid in pids.values() if pid is not None)
    assert _pids(running) == {"kafka": None, "minio": None}
    assert not list((running.state_dir / "run").glob("*.pid"))
    assert not infra.kafka_ready(running)
    assert not infra.minio_ready(running)
