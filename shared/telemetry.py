"""OpenTelemetry set-up shared by every service: traces and metrics, OTLP export when configured."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from shared.settings import Settings


@dataclass(frozen=True)
class Telemetry:
    """The providers a service reports through, and the Kafka middleware that uses them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def kafka_middleware(self) -> KafkaTelemetryMiddleware:
        """FastStream middleware that carries trace context in Kafka headers."""
        return KafkaTelemetryMiddleware(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service_name: str,
    settings: Settings,
    *,
    span_processors: tuple[SpanProcessor, ...] = (),
    metric_readers: tuple[MetricReader, ...] = (),
) -> Telemetry:
    """Providers for ``service_name``; exports OTLP over HTTP when ``otlp_endpoint`` is set.

    Extra processors and readers let tests collect spans and metrics in memory.
    """
    resource = Resource.create({SERVICE_NAME: f"conveyor-{service_name}"})
    tracer_provider = TracerProvider(resource=resource)
    readers = list(metric_readers)
    if settings.otlp_export_endpoint:
        # Imported only when used: the exporter pulls in protobuf and an HTTP session.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_export_endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")))
    if settings.trace_file:
        tracer_provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(settings.trace_file)))
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line; several processes may share it.

    For tests and for looking at a trace without a trace viewer (CONVEYOR_TRACE_FILE).
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``; each line goes out in one append so processes do not interleave."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(_summary(span)) + "\n" for span in spans)
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, lines.encode())
        finally:
            os.close(descriptor)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


def _summary(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    return {
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "service": span.resource.attributes.get(SERVICE_NAME),
        "start": span.start_time,
        "end": span.end_time,
        "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
    }
