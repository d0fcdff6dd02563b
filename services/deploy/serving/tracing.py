"""Spans of the serving workers: each prediction, its model call and its capture, and the arrival's trace.

Workers export through the same settings as the services (``CONVEYOR_OTLP_ENDPOINT``,
``CONVEYOR_TRACE_FILE``); with neither set, nothing is recorded and a prediction pays nothing.
A request that carries trace context (``traceparent``) continues that trace. The first request a
newly deployed version answers without context of its own joins the trace of the data arrival
that produced the version (the deploy service hands its context over with the version), so one
trace runs from the arrival to the first prediction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import Span

from shared.settings import Settings
from shared.telemetry import Telemetry, setup_telemetry

SERVICE = "serving"
_TRACE_HEADERS = ("traceparent", "tracestate")


def carrier_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace headers among ``headers`` (what travels with a version or a request)."""
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}


def current_carrier() -> dict[str, str]:
    """The trace context of the running span, as headers (empty outside any span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class Origin:
    """The arrival's trace context a new version carries, given to its first request only."""

    def __init__(self, carrier: Mapping[str, str] | None) -> None:
        self._context: Context | None = propagate.extract(dict(carrier)) if carrier else None

    def take(self) -> Context | None:
        """The context once; None afterwards."""
        context, self._context = self._context, None
        return context


class ServingTracer:
    """The worker's tracer; a no-op when no export is configured."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = bool(settings.otlp_endpoint or settings.trace_file)
        self._telemetry: Telemetry | None = setup_telemetry(SERVICE, settings) if self.enabled else None
        self._tracer = (
            self._telemetry.tracer_provider.get_tracer("conveyor.serving") if self._telemetry else None
        )

    def request(
        self, name: str, *, headers: Mapping[str, str], origin: Origin, attributes: Mapping[str, Any]
    ) -> Any:
        """The span of one request (a context manager), continuing its own trace or the arrival's."""
        if self._tracer is None:
            return nullcontext()
        carrier = carrier_of(headers)
        parent = propagate.extract(carrier) if carrier else origin.take()
        return self._tracer.start_as_current_span(name, context=parent, attributes=dict(attributes))

    @contextmanager
    def step(self, name: str) -> Iterator[Span | None]:
        """A child span of the current request's span (a model call, a capture)."""
        if self._tracer is None:
            yield None
            return
        with self._tracer.start_as_current_span(name) as span:
            yield span

    def shutdown(self) -> None:
        """Flush what is recorded."""
        if self._telemetry is not None:
            self._telemetry.shutdown()
