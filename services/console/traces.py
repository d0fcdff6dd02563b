"""An arrival's trace, from Jaeger's query API when one runs, else from the trace file.

Both give the same flat list of spans, placed relative to the trace's first span, which the
arrival page draws as a waterfall.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.settings import Settings

JAEGER, TRACE_FILE = "Jaeger", "the trace file"


@dataclass(frozen=True)
class Span:
    """One span of a trace, in milliseconds from the trace's start."""

    service: str
    name: str
    start_ms: float
    duration_ms: float


@dataclass(frozen=True)
class Trace:
    """An arrival's spans, where they were read from, and why there are none when there are none."""

    spans: list[Span]
    source: str | None = None
    error: str | None = None

    @property
    def services(self) -> list[str]:
        """The services that recorded spans of the trace, by name."""
        return sorted({span.service for span in self.spans})


def arrival_trace(settings: Settings, trace_id: str | None) -> Trace:
    """The trace from Jaeger when one is configured, else from the trace file; never raises."""
    if trace_id is None:
        return Trace([], error="this arrival carried no trace context")
    try:
        if settings.jaeger_query_base_url:
            return Trace(from_jaeger(settings.jaeger_query_base_url, trace_id), JAEGER)
        if settings.trace_file:
            return Trace(from_trace_file(settings.trace_file, trace_id), TRACE_FILE)
    except Exception as error:  # the trace viewer is optional: the page shows the rest
        return Trace([], error=f"trace not available: {type(error).__name__}")
    return Trace(
        [], error="no trace viewer configured (CONVEYOR_JAEGER=1 with make up, or CONVEYOR_TRACE_FILE)"
    )


def waterfall(spans: list[Span]) -> list[Span]:
    """The spans ordered by start, as a waterfall lists them."""
    return sorted(spans, key=lambda s: (s.start_ms, -s.duration_ms))


def from_jaeger(query_url: str, trace_id: str, *, timeout: float = 5.0) -> list[Span]:
    """The spans Jaeger holds for ``trace_id`` (none when it does not know the trace)."""
    response = httpx.get(f"{query_url.rstrip('/')}/api/traces/{trace_id}", timeout=timeout)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return jaeger_spans(response.json())


def jaeger_spans(body: dict[str, Any]) -> list[Span]:
    """Spans from Jaeger's ``/api/traces/<id>`` answer (microsecond times, services per process)."""
    found: list[tuple[str, str, int, int]] = []
    for trace in body.get("data") or []:
        processes = trace.get("processes", {})
        for span in trace.get("spans", []):
            service = processes.get(span.get("processID"), {}).get("serviceName", "?")
            found.append((service, span["operationName"], int(span["startTime"]), int(span["duration"])))
    if not found:
        return []
    origin = min(start for _, _, start, _ in found)
    return waterfall([Span(s, n, (start - origin) / 1000, d / 1000) for s, n, start, d in found])


def from_trace_file(path: Path, trace_id: str) -> list[Span]:
    """The spans of ``trace_id`` in a JSON-lines trace file (nanosecond times)."""
    if not path.exists():
        return []
    found: list[tuple[str, str, int, int]] = []
    with path.open(errors="replace") as lines:
        for line in lines:
            if trace_id not in line:
                continue
            try:
                span = json.loads(line)
            except ValueError:  # a line another process is still appending
                continue
            if span.get("trace_id") == trace_id and span.get("start") and span.get("end"):
                found.append((str(span["service"]), str(span["name"]), span["start"], span["end"]))
    if not found:
        return []
    origin = min(start for _, _, start, _ in found)
    return waterfall([Span(s, n, (a - origin) / 1e6, (b - a) / 1e6) for s, n, a, b in found])
