"""The five Conveyor services as local processes: started, checked and stopped like the servers."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from infra import process
from infra.minio_users import service_credentials
from shared.settings import Settings

# Registry first: evaluate asks it for the champion. Deploy last: it serves what the rest produce.
SERVICES = ("registry", "ingest", "train", "evaluate", "deploy")
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
    if name == "registry":
        return settings.registry_base_url
    if name == "deploy":
        return settings.deploy_base_url
    return "kafka consumer"


def _ports(name: str, settings: Settings) -> list[tuple[str, int]]:
    if name == "registry":
        return [(settings.registry_host, settings.registry_port)]
    if name == "deploy":
        return [(settings.deploy_host, settings.deploy_port)]
    return []


def _ready(name: str, settings: Settings, *, log: Path, pidfile: Path) -> bool:
    if name in ("registry", "deploy"):
        url = settings.registry_base_url if name == "registry" else settings.deploy_base_url
        try:
            return httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        pid = int(pidfile.read_text().strip())
        return ready_line(name, pid) in log.read_text(errors="replace")
    except (FileNotFoundError, ValueError):
        return False
