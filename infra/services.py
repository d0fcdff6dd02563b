"""The Conveyor services and the console as local processes, started and stopped like the servers."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from infra import process
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


def ready_line(name: str, pid: int) -> str:
    """The log message a service writes once it consumes (see shared.service)."""
    return f"{name} ready (pid {pid})"


def service_server(name: str, settings: Settings) -> process.Server:
    """One service as a local process, with its log under the state directory."""
    log = settings.state_dir / "logs" / f"{name}.log"
    run_dir = settings.state_dir / "run"
    server = process.Server(
        name=name,
        argv=[sys.executable, "-m", f"services.{name}"],
        address=_address(name, settings),
        ports=_ports(name, settings),
        run_dir=run_dir,
        output=log,
        ready=lambda: _ready(name, settings, log=log, pidfile=run_dir / f"{name}.pid"),
        marker=f"services.{name}",
        # Its own MinIO user (least privilege), once `up` has provisioned them.
        env={"PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True", **service_credentials(settings, name)},
    )
    return server


def start_services(settings: Settings, *, timeout: float = 120.0) -> None:
    """Start every service that is not running, in order, each until it is ready."""
    for name in SERVICES:
        process.start(service_server(name, settings), timeout=timeout)


def stop_services(settings: Settings) -> None:
    """Stop every running service by its recorded pid, in reverse order."""
    for name in reversed(SERVICES):
        process.stop(service_server(name, settings))


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
