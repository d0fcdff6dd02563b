"""The whole local stack: Kafka then MinIO, started, stopped and reported together."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra import process
from infra.kafka import kafka_servers, start_kafka, stop_kafka
from infra.minio import minio_server
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
    """Every server of the local stack, in start order (each Kafka broker, then MinIO)."""
    return [*kafka_servers(settings), minio_server(settings)]


def up(settings: Settings, *, timeout: float = 120.0) -> None:
    """Start every server that is not running and wait until each answers."""
    if _docker_requested(settings):
        _compose("up", "--detach", *DOCKER_SERVICES)
        for server in servers(settings):
            if not process.wait_until(server.ready, timeout=timeout):
                raise process.InfraError(f"{server.name} (docker) not ready within {timeout:.0f}s")
        return
    start_kafka(settings, timeout=timeout)  # a cluster's brokers start side by side
    process.start(minio_server(settings), timeout=timeout)


def down(settings: Settings) -> None:
    """Stop every server this state directory records, keeping their data."""
    if _docker_requested(settings):
        _compose("stop", *DOCKER_SERVICES)
        return
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


def _compose(*args: str) -> None:
    """Run `docker compose` on the repository's docker-compose.yml (fixed default ports)."""
    if not COMPOSE_FILE.is_file():
        raise process.InfraError(f"CONVEYOR_USE_DOCKER=1 needs {COMPOSE_FILE}, which is missing")
    process.run_build(["docker", "compose", "-f", str(COMPOSE_FILE), *args], what=f"docker compose {args[0]}")
