"""The whole local stack: Kafka then MinIO, started, stopped and reported together."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra import process, spark
from infra.jaeger import jaeger_server
from infra.kafka import kafka_servers, start_kafka, stop_kafka
from infra.minio import minio_server
from infra.minio_users import provision_local_users
from shared.secrets import read_local_secrets, with_local_secrets
from shared.settings import Settings

# The repository's compose file; in Docker mode only its infrastructure services are used.
COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
DOCKER_SERVICES = ("kafka", "minio", "minio-buckets")


@dataclass(frozen=True)
class ServerStatus:
    """One line of `python -m infra status`."""

    name: str
    pid: int | None
    address: str
    healthy: bool


def servers(settings: Settings) -> list[process.Server]:
    """Every server of the local stack, in start order (each Kafka broker, MinIO, Jaeger when asked for)."""
    return [*kafka_servers(settings), minio_server(settings)] + (
        [jaeger_server(settings)] if settings.jaeger else []
    )


def up(settings: Settings, *, timeout: float = 120.0) -> Settings:
    """Start every server that is not running and wait until each answers.

    The first start of a state directory generates its secrets (shared.secrets); the settings
    returned carry them wherever no CONVEYOR_* variable set a value.
    """
    data = settings.state_dir / "minio" / "data"
    older = data.is_dir() and any(data.iterdir()) and read_local_secrets(settings.state_dir) is None
    # MinIO data made before secrets.json existed keeps the root keys it was made with (loopback only).
    settings = with_local_secrets(
        settings, minio_root=(settings.minio_access_key, settings.minio_secret_key) if older else None
    )
    if _docker_requested(settings):
        _compose(settings, "up", "--detach", *DOCKER_SERVICES)
        for server in servers(settings):
            if not process.wait_until(server.ready, timeout=timeout):
                raise process.InfraError(f"{server.name} (docker) not ready within {timeout:.0f}s")
        return settings
    start_kafka(settings, timeout=timeout)  # a cluster's brokers start side by side
    process.start(minio_server(settings), timeout=timeout)
    if settings.jaeger:
        process.start(jaeger_server(settings), timeout=timeout)
    if spark.requested():  # CONVEYOR_SPARK=1: a standalone master and workers for batch jobs
        spark.start_spark(settings, timeout=timeout)
    provision_local_users(settings)  # each service its own MinIO user (shared.access)
    return settings


def down(settings: Settings) -> None:
    """Stop every server this state directory records, keeping their data."""
    if _docker_requested(settings):
        _compose(settings, "stop", *DOCKER_SERVICES)
        return
    process.stop(jaeger_server(settings))  # whether or not CONVEYOR_JAEGER=1 is set now
    if spark.installed():  # whether or not CONVEYOR_SPARK=1 is set now
        spark.stop_spark(settings)
    process.stop(minio_server(settings))
    stop_kafka(settings)


def status(settings: Settings) -> list[ServerStatus]:
    """Each server's recorded pid, address and whether it answers right now."""
    return [
        ServerStatus(
            name=server.name,
            pid=process.running_pid(server),
            address=server.address,
            healthy=server.ready(),
        )
        for server in servers(settings)
    ]


def _docker_requested(settings: Settings) -> bool:
    """Docker only when asked for (CONVEYOR_USE_DOCKER=1) and an engine really answers."""
    if not settings.use_docker:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=15)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


def _compose(settings: Settings, *args: str) -> None:
    """Run `docker compose` on the repository's docker-compose.yml (fixed default ports)."""
    if not COMPOSE_FILE.is_file():
        raise process.InfraError(f"CONVEYOR_USE_DOCKER=1 needs {COMPOSE_FILE}, which is missing")
    process.run_build(
        ["docker", "compose", "-f", str(COMPOSE_FILE), *args],
        what=f"docker compose {args[0]}",
        log=settings.state_dir / "logs" / "docker-compose.log",
    )
