"""A MinIO server, built from its Go module and run as a local process.

One drive by default. With ``CONVEYOR_MINIO_DRIVES=4`` (opt-in) it runs over four drive
directories forming one erasure set: each object is split into data and parity shards (EC:2 for
four drives), so one lost drive loses no object and stops no read or write, and MinIO heals a
drive that comes back empty. The drives live under ``<state>/minio/drives/`` and never share
files with the single-drive ``<state>/minio/data``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from infra import process
from shared.secrets import WELL_KNOWN_SECRETS, is_loopback
from shared.settings import Settings

MODULE = "github.com/minio/minio"
# The module proxy refuses MinIO's RELEASE.* tags (not semantic versions), so the build pins the
# pseudo-version of the module's last commit instead.
VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def binary_path(settings: Settings) -> Path:
    """Where the built MinIO binary is cached, one directory per pinned version."""
    return settings.cache_dir / f"minio-{VERSION}" / "minio"


def ensure_binary(settings: Settings) -> Path:
    """Build the MinIO binary with `go install` unless it is cached; return its path."""
    binary = binary_path(settings)
    # `go install` writes the binary only once the build succeeded, so its presence means complete.
    if not binary.exists():
        process.run_build(
            ["go", "install", "-v", f"{MODULE}@{VERSION}"],
            env={"GOBIN": str(binary.parent)},
            what="MinIO build (first run only, a few minutes)",
            log=settings.state_dir / "logs" / "minio-build.log",
        )
    return binary


def health_url(settings: Settings) -> str:
    """MinIO's liveness endpoint."""
    return f"http://{settings.minio_host}:{settings.minio_port}/minio/health/live"


def minio_ready(settings: Settings) -> bool:
    """Whether MinIO answers 200: alive, and with several drives able to write (quorum)."""
    url = health_url(settings)
    if settings.minio_drives > 1:
        url = url.replace("/health/live", "/health/cluster")
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def drive_dirs(settings: Settings) -> list[Path]:
    """The directory of each drive of an erasure-coded MinIO (drive1..driveN)."""
    drives = settings.state_dir / "minio" / "drives"
    return [drives / f"drive{n}" for n in range(1, settings.minio_drives + 1)]


def minio_server(settings: Settings) -> process.Server:
    """MinIO as a local process: command, credentials, files, ports and readiness probe."""
    data = settings.state_dir / "minio" / "data"
    volumes = str(data)
    if settings.minio_drives > 1:
        data = settings.state_dir / "minio" / "drives"
        volumes = f"{data}/drive{{1...{settings.minio_drives}}}"  # MinIO's own ellipsis notation
    listen = ["--address", f"{settings.minio_host}:{settings.minio_port}"]
    console = ["--console-address", f"{settings.minio_host}:{settings.minio_console_port}"]
    return process.Server(
        name="minio",
        argv=[str(binary_path(settings)), "server", volumes, *listen, *console],
        address=settings.s3_endpoint,
        ports=[
            (settings.minio_host, settings.minio_port),
            (settings.minio_host, settings.minio_console_port),
        ],
        run_dir=settings.state_dir / "run",
        output=settings.state_dir / "logs" / "minio.log",
        ready=lambda: minio_ready(settings),
        marker=str(data),
        prepare=lambda: _prepare(settings, data),
        env={
            "MINIO_ROOT_USER": settings.minio_access_key,
            "MINIO_ROOT_PASSWORD": settings.minio_secret_key.get_secret_value(),
            # A local server must not reach out to check for (or apply) new releases.
            "MINIO_UPDATE": "off",
            # Several drives on one machine share its root disk, which MinIO otherwise refuses
            # ("drive not found") as a production safeguard.
            **({"MINIO_CI_CD": "1"} if settings.minio_drives > 1 else {}),
        },
    )


def start_minio(settings: Settings, *, timeout: float = 120.0) -> int:
    """Start MinIO (building it on first use); return its pid."""
    return process.start(minio_server(settings), timeout=timeout)


def stop_minio(settings: Settings) -> bool:
    """Stop MinIO, keeping its data; return whether it was running."""
    return process.stop(minio_server(settings))


def _prepare(settings: Settings, data: Path) -> None:
    """Make the binary and the data directory ready for a start (never beyond loopback with known keys)."""
    if (
        not is_loopback(settings.minio_host)
        and settings.minio_secret_key.get_secret_value() in WELL_KNOWN_SECRETS
    ):
        raise process.InfraError(
            f"minio refuses to listen on {settings.minio_host} with a well-known root secret: "
            "set CONVEYOR_MINIO_SECRET_KEY (or listen on 127.0.0.1 only)"
        )
    ensure_binary(settings)
    data.mkdir(parents=True, exist_ok=True)
    for drive in drive_dirs(settings) if settings.minio_drives > 1 else []:
        drive.mkdir(exist_ok=True)
