"""One arrival's trace, read back from a real Jaeger: spans of the sdk and of every service.

Opt-in (``make test-traces``): Jaeger is built from its Go module on first use. The console, given
Jaeger and no trace file, draws the same trace on the arrival's page.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from shared.clients.events import publish_data_arrival
from shared.clients.serving import PredictionClient
from shared.events import ModelDeployed
from shared.settings import Settings
from shared.telemetry import setup_telemetry
from tests.e2e.conftest import Stack
from tests.e2e.test_release import apply, breast_cancer

pytestmark = [
    pytest.mark.infra,
    pytest.mark.skipif(not Settings().jaeger, reason="opt-in: make test-traces (CONVEYOR_JAEGER=1)"),
]
EXPECTED = {f"conveyor-{name}" for name in ("sdk", "ingest", "train", "evaluate", "registry", "deploy")}


async def test_one_arrival_is_one_trace_in_jaeger(stack: Stack, console: str, pipeline_name: str) -> None:
    settings = stack.settings
    assert settings.jaeger_query_base_url is not None
    apply(stack, pipeline_name, approval="auto")
    telemetry = setup_telemetry("test", settings)
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("test arrival") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        arrival = await publish_data_arrival(
            settings,
            pipeline=pipeline_name,
            data=breast_cancer().to_csv(index=False).encode(),
            filename="t.csv",
        )
    telemetry.shutdown()
    deployed = await stack.watcher.wait_for(ModelDeployed, correlation_id=arrival.correlation_id, timeout=300)
    assert isinstance(deployed, ModelDeployed)
    with PredictionClient(deployed.endpoint_url) as client:
        client.predict(breast_cancer().drop(columns=["target"]).iloc[0].to_dict())
    services: set[str] = set()
    deadline = time.monotonic() + 90  # services export in batches (every few seconds)
    async with httpx.AsyncClient(base_url=settings.jaeger_query_base_url, timeout=10) as jaeger:
        while not services >= EXPECTED and time.monotonic() < deadline:
            answer = await jaeger.get(f"/api/traces/{trace_id}")
            if answer.status_code == 200:
                for trace in answer.json().get("data") or []:
                    assert trace["traceID"] == trace_id
                    services |= {p["serviceName"] for p in trace["processes"].values()}
            await asyncio.sleep(1)
    assert services >= EXPECTED, f"Jaeger holds spans of {sorted(services)} for trace {trace_id}"

    async with httpx.AsyncClient(base_url=console, timeout=10) as browser:
        page = await browser.get(f"/arrivals/{arrival.correlation_id}")
        while page.status_code == 404 and time.monotonic() < deadline:  # the console reads as it goes
            await asyncio.sleep(0.5)
            page = await browser.get(f"/arrivals/{arrival.correlation_id}")
        assert page.status_code == 200 and f"trace {trace_id}" in page.text
        source = re.search(r'id="trace-source" data-source="([^"]+)"', page.text)
        assert source is not None and source.group(1) == "Jaeger", page.text
        drawn = set(re.findall(r'<g data-service="([^"]+)">', page.text))
        assert drawn >= EXPECTED, f"the console draws spans of {sorted(drawn)}"


def test_jaeger_takes_the_metrics_the_services_export_beside_their_spans() -> None:
    # Each service's OTLP metric exporter posts here every interval; a refusal would be logged each time.
    settings = Settings()
    endpoint = settings.otlp_export_endpoint
    assert endpoint is not None
    answer = httpx.post(
        f"{endpoint}/v1/metrics", content=b"", headers={"Content-Type": "application/x-protobuf"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
