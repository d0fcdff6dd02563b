"""The Conveyor services and the console as local processes, started and stopped like the servers."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from infra import process
from infra.kafka_access import service_principal
from infra.minio_users import service_credentials
from shared.settings import Settings

# Registry first: evaluate asks it for the champion. Deploy next to last: it serves what the rest
# produce. The console last: it reads them all.
SERVICES = ("registry", "ingest", "train", "evaluate", "deploy", "console")
# The services that answer HTTP, and where (the rest are Kafka consumers).
_HTTP = {
    "registry": lambda s: (s.registry_host, s.registry_port, s.registry_base_url),
    "deploy": lambda s: (s.deploy_host, s.deploy_port, s.deploy_base_url),
    "console": lambda s: (s.console_host, s.console_port, s.console_base_url),
}
ROOT = Path(__file__).resolve().parents[1]
# Services that may run more than one process, sharing their consumer group. Deploy owns its
# endpoints' processes and ports, and runs once.
SCALABLE = ("registry", "ingest", "train", "evaluate")


def parse_replicas(text: str) -> dict[str, int]:
    """``train=2,ingest=2`` as {"train": 2, "ingest": 2}; ValueError with the reason otherwise."""
    replicas: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if name not in SCALABLE:
            raise ValueError(f"cannot scale {name!r}: replicas are for {', '.join(SCALABLE)}")
        if not count.isdigit() or not 1 <= int(count) <= 6:
            raise ValueError(f"{part!r}: the replica count must be a whole number from 1 to 6")
        replicas[name] = int(count)
    return replicas


def ready_line(name: str, pid: int) -> str:
    """The log message a service writes once it consumes (see shared.service)."""
    return f"{name} ready (pid {pid})"


def service_server(name: str, settings: Settings, *, replica: int = 1) -> process.Server:
    """One service (replica) as a local process, with its log under the state directory.

    Replica 1 is ``name``; replica n is ``name-n``, in the same consumer group. A second registry
    listens on registry_port + n - 1, and beside the first on the registry's address, which it is
    told (``services.registry.__main__``).
    """
    process_name = name if replica == 1 else f"{name}-{replica}"
    log = settings.state_dir / "logs" / f"{process_name}.log"
    run_dir = settings.state_dir / "run"
    env = {"PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True"}
    if replica > 1 and name == "registry":
        env["CONVEYOR_REGISTRY_URL"] = settings.registry_base_url  # the address every replica serves
        settings = settings.model_copy(update={"registry_port": settings.registry_port + replica - 1})
    # What `conveyor up --brokers/--replicas` chose, for the service's own Settings to read.
    env["CONVEYOR_KAFKA_BROKERS"] = str(settings.kafka_brokers)
    env["CONVEYOR_REGISTRY_PORT"] = str(settings.registry_port)
    env["CONVEYOR_REGISTRY_REPLICAS"] = str(settings.registry_replicas)
    server = process.Server(
        name=process_name,
        argv=[sys.executable, "-m", f"services.{name}"],
        address=_address(name, settings),
        ports=_ports(name, settings),
        run_dir=run_dir,
        output=log,
        ready=lambda: _ready(name, settings, log=log, pidfile=run_dir / f"{process_name}.pid"),
        marker=f"services.{name}",
        # Its own MinIO user (least privilege), once `up` has provisioned them; in SASL mode its
        # own Kafka principal too.
        env={**env, **service_credentials(settings, name), **service_principal(settings, name)},
    )
    return server


def service_servers(settings: Settings, replicas: Mapping[str, int] | None = None) -> list[process.Server]:
    """Every service process, replicas included: those asked for, and any recorded as running."""
    servers = []
    for name in SERVICES:
        recorded = _recorded_replicas(name, settings)
        count = max((replicas or {}).get(name, 1), recorded)
        # Replicas of the registry read what the others wrote.
        own = settings.model_copy(update={"registry_replicas": count}) if name == "registry" else settings
        servers += [service_server(name, own, replica=n) for n in range(1, count + 1)]
    return servers


def start_services(
    settings: Settings, *, replicas: Mapping[str, int] | None = None, timeout: float = 120.0
) -> None:
    """Start every service (and replica) that is not running, in order, each until it is ready."""
    for server in service_servers(settings, replicas):
        process.start(server, timeout=timeout)


def stop_services(settings: Settings) -> None:
    """Stop every running service and replica by its recorded pid, in reverse order."""
    for server in reversed(service_servers(settings)):
        process.stop(server)


def _recorded_replicas(name: str, settings: Settings) -> int:
    """The highest replica number with a pidfile in the run directory (1 when none)."""
    numbers = [1]
    for pidfile in (settings.state_dir / "run").glob(f"{name}-*.pid"):
        suffix = pidfile.stem.removeprefix(f"{name}-")
        if suffix.isdigit():
            numbers.append(int(suffix))
    return max(numbers)


def _address(name: str, settings: Settings) -> str:
    return _HTTP[name](settings)[2] if name in _HTTP else "kafka consumer"


def _ports(name: str, settings: Settings) -> list[tuple[str, int]]:
    if name in _HTTP:
        host, port, _ = _HTTP[name](settings)
        return [(host, port)]
    return []


def _ready(name: str, settings: Settings, *, log: Path, pidfile: Path) -> bool:
    if name in _HTTP:
        url = _HTTP[name](settings)[2]
        try:
            return httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        pid = int(pidfile.read_text().strip())
        return ready_line(name, pid) in log.read_text(errors="replace")
    except (FileNotFoundError, ValueError):
        return False
