"""Jaeger (opt-in: CONVEYOR_JAEGER=1), built from its Go module and run as a local process.

One binary (Jaeger v2, an OpenTelemetry Collector build) with in-memory storage: an OTLP/HTTP
receiver the services export to, and the query API the console and the tests read traces from.
The configuration is written per state directory so every port is a setting.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from infra import process
from shared.settings import Settings

MODULE = "github.com/jaegertracing/jaeger"
PACKAGE = f"{MODULE}/cmd/jaeger"
VERSION = "v1.75.0"
# Jaeger's go.mod has replace directives, so `go install pkg@version` refuses it; the build goes
# through a throw-away module that requires it as a tool (`go get -tool`), then builds that.
_BUILD_MODULE = "conveyor.local/jaeger-build"


def binary_path(settings: Settings) -> Path:
    """Where the built Jaeger binary is cached, one directory per pinned version."""
    return settings.cache_dir / f"jaeger-{VERSION}" / "jaeger"


def ensure_binary(settings: Settings) -> Path:
    """Build the Jaeger binary unless it is cached; return its path."""
    binary = binary_path(settings)
    if binary.exists():  # `go build -o` writes it only once the build succeeded
        return binary
    work = binary.parent / "build"
    work.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / "logs" / "jaeger-build.log"
    if not (work / "go.mod").exists():
        process.run_build(["go", "mod", "init", _BUILD_MODULE], what="Jaeger build module", log=log, cwd=work)
    what = f"Jaeger {VERSION} build (first run only, several minutes)"
    process.run_build(["go", "get", "-tool", f"{PACKAGE}@{VERSION}"], what=what, log=log, cwd=work)
    process.run_build(["go", "build", "-o", str(binary), PACKAGE], what=what, log=log, cwd=work)
    return binary


def config_text(settings: Settings) -> str:
    """The collector configuration: OTLP/HTTP in, memory storage, the query API out.

    The services send their metrics to the same OTLP endpoint as their spans; Jaeger keeps only
    traces, so metrics are taken and dropped (``nop``) instead of refused with a 404 that every
    process would log each export interval.
    """
    host = settings.jaeger_host
    return f"""service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
    metrics:
      receivers: [otlp]
      exporters: [nop]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: "{host}:{settings.jaeger_query_port}"
    grpc:
      endpoint: "{host}:{settings.jaeger_query_grpc_port}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "{host}:{settings.jaeger_otlp_port}"
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
  nop:
"""


def otlp_endpoint(settings: Settings) -> str:
    """Where services export spans to this Jaeger (CONVEYOR_OTLP_ENDPOINT)."""
    return f"http://{settings.jaeger_host}:{settings.jaeger_otlp_port}"


def jaeger_ready(settings: Settings) -> bool:
    """Whether the query API answers."""
    try:
        return httpx.get(f"{settings.jaeger_query_base_url}/api/services", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def jaeger_server(settings: Settings) -> process.Server:
    """Jaeger as a local process: command, configuration, ports and readiness probe."""
    config = settings.state_dir / "jaeger" / "config.yaml"
    return process.Server(
        name="jaeger",
        argv=[str(binary_path(settings)), "--config", str(config)],
        address=f"{settings.jaeger_host}:{settings.jaeger_query_port}",
        ports=[
            (settings.jaeger_host, settings.jaeger_otlp_port),
            (settings.jaeger_host, settings.jaeger_query_port),
            (settings.jaeger_host, settings.jaeger_query_grpc_port),
        ],
        run_dir=settings.state_dir / "run",
        output=settings.state_dir / "logs" / "jaeger.log",
        ready=lambda: jaeger_ready(settings),
        marker=str(config),
        prepare=lambda: _prepare(settings, config),
    )


def _prepare(settings: Settings, config: Path) -> None:
    ensure_binary(settings)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config_text(settings))
