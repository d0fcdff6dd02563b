"""The console in a real headless Chromium, over all the services as processes.

Watches an arrival's graph fill in, approves and rolls back by clicking, replays a dead letter,
and checks that markup arriving in events or dead letters stays text and that no page logs a
JavaScript error.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.clients.deploy import DeployClient
from shared.clients.events import publish_data_arrival
from shared.clients.serving import PredictionClient
from shared.events import DataArrived, DatasetRejected, ModelDeployed, ModelEvaluated
from shared.messaging import KafkaEventPublisher, create_broker, ensure_topics, stop_consumer
from shared.messaging.dead_letter import DeadLetter, publish_dead_letter
from shared.settings import Settings
from tests.e2e.browser import Browser, until
from tests.e2e.conftest import TOKEN, Stack
from tests.e2e.test_release import apply, arrive, breast_cancer
from tests.integration.processes import ServiceProcess, free_port

pytestmark = pytest.mark.infra
ROW = breast_cancer().drop(columns=["target"]).iloc[0].to_dict()


@pytest.fixture(scope="module")
async def console(stack: Stack, stack_env: dict[str, str]) -> AsyncIterator[str]:
    """The console as a process over the stack; its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ServiceProcess(
        "console",
        env={**stack_env, "CONVEYOR_CONSOLE_PORT": str(port)},
        log_dir=stack.settings.state_dir / "logs",
        ready_url=f"{url}/health/ready",
    )
    await asyncio.to_thread(process.start, timeout=120)
    yield url
    await asyncio.to_thread(process.stop)


@pytest.fixture(scope="module")
def browser(console: str, tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile; its screenshots stay under the stack's state dir."""
    opened = Browser(
        console,
        profile=tmp_path_factory.mktemp("chromium-profile"),
        artifacts=stack.settings.state_dir / "screenshots",
    )
    yield opened
    opened.quit()


@pytest.fixture(autouse=True)
def fresh_log(browser: Browser) -> None:
    """Each test answers only for what its own pages log."""
    browser.forget_log()


def notice(browser: Browser) -> str:
    """The page's notice line, or blank."""
    found = browser.all("#notice")
    return found[0].text if found else ""


def step_state(browser: Browser, step: str) -> str | None:
    """The state the arrival graph shows for ``step``."""
    return browser.find(f'#graph li[data-step="{step}"]').get_attribute("data-state")


async def serve_with_feedback(endpoint_url: str, *, rows: pd.DataFrame) -> None:
    """Predict each row, then send its true target back."""
    with PredictionClient(endpoint_url) as client:
        for _, row in rows.iterrows():
            answer = client.predict(row.drop("target").to_dict())
            client.feedback(answer.predictions[0].prediction_id, int(row["target"]))


def measured_rate(browser: Browser, section: str) -> float | None:
    """The request rate the deployments page shows, once it has two readings to measure between."""
    browser.visit("/deployments")
    found = re.match(r"([0-9.]+) requests/s", browser.find(f"{section} .request-rate").text)
    return float(found.group(1)) if found else None


async def wait_deployed(stack: Stack, correlation_id: uuid.UUID) -> ModelDeployed:
    deployed = await stack.watcher.wait_for(ModelDeployed, correlation_id=correlation_id, timeout=240)
    assert isinstance(deployed, ModelDeployed)
    return deployed


async def test_an_arrival_graph_fills_in_live_then_a_rollback_by_click(
    stack: Stack, console: str, browser: Browser, pipeline_name: str
) -> None:
    apply(stack, pipeline_name, approval="auto")
    arrival = await publish_data_arrival(
        stack.settings,
        pipeline=pipeline_name,
        data=breast_cancer().to_csv(index=False).encode(),
        filename="a.csv",
    )
    page = f"/arrivals/{arrival.correlation_id}"
    await until(lambda: httpx.get(console + page).status_code == 200, timeout=60, what="the console read it")
    browser.visit(page)
    browser.script("window.conveyorTestMarker = 'the same page'")
    done_when_opened = len(browser.all('#graph li[data-state="done"]'))
    try:
        await until(
            lambda: step_state(browser, "deployed") == "done", timeout=240, what="the graph reached deployed"
        )
    except AssertionError:
        browser.screenshot("failed-arrival")
        shown = [e.get_attribute("data-state") for e in browser.all("#graph li")]
        served = httpx.get(f"{console}{page}/graph").text.count('data-state="done"')
        raise AssertionError(f"the page shows {shown}; the console serves {served} steps done") from None
    assert done_when_opened < 7, "the chain finished before the page could watch it"
    # It filled in by itself: the page was never reloaded.
    assert browser.script("return window.conveyorTestMarker") == "the same page"
    deployed = await wait_deployed(stack, arrival.correlation_id)
    with PredictionClient(deployed.endpoint_url) as client:
        assert client.predict(ROW).version == 1
    await until(
        lambda: step_state(browser, "first prediction") == "done", timeout=60, what="first prediction"
    )
    assert [step_state(browser, s) for s in ("arrived", "validated", "trained", "evaluated")] == ["done"] * 4
    assert browser.all("#waterfall rect"), "the arrival's trace is drawn"
    browser.screenshot("arrival")
    assert browser.errors() == []

    second = await arrive(stack, pipeline_name, breast_cancer(seed=7))
    assert second.version == 2
    await wait_deployed(stack, second.correlation_id)
    section = f'section[data-pipeline="{pipeline_name}"]'
    browser.visit("/deployments")  # the console's first reading of the endpoint's metrics
    assert browser.find(f"{section} .active-version").text == "2"
    await serve_with_feedback(deployed.endpoint_url, rows=breast_cancer().head(20))
    rate = await until(lambda: measured_rate(browser, section), timeout=30, what="a request rate")
    assert rate > 0
    p50, p99 = (float(browser.find(f"{section} .{q}").text) for q in ("p50", "p99"))
    assert 0 < p50 <= p99, (p50, p99)
    feedback = browser.find(f'{section} .version-feedback[data-version="2"]').text
    assert feedback.startswith("v2: ") and feedback.endswith("(20 feedback)"), feedback
    live = httpx.get(f"{console}/deployments/{pipeline_name}/figures").text  # what the page polls
    assert re.search(r'class="request-rate">[0-9.]+ requests/s', live) and 'class="p99"' in live
    browser.submit(f"{section} button.rollback")  # not signed in yet
    assert browser.find("#error-title").text == "401 Sign-in needed"
    assert "approver token" in browser.find("#error-message").text
    assert browser.errors(expected_statuses=(401,)) == []
    browser.visit("/deployments")
    browser.sign_in(TOKEN)
    assert "signed in" in notice(browser)
    browser.submit(f"{section} button.rollback")
    assert notice(browser) == f"{pipeline_name} rolled back to version 1"
    assert DeployClient(stack.settings.deploy_base_url).deployment(pipeline_name)["active_version"] == 1
    with PredictionClient(deployed.endpoint_url) as client:
        await until(lambda: client.predict(ROW).version == 1, timeout=60, what="the endpoint serves v1 again")
    browser.screenshot("deployments")
    assert browser.errors() == []


async def test_a_manual_version_approved_by_click_is_served(
    stack: Stack, console: str, browser: Browser, pipeline_name: str
) -> None:
    spec = apply(stack, pipeline_name, approval="manual")
    stack.specs.apply(spec.model_copy(update={"sensitive_attribute": "cohort"}))
    frame = breast_cancer()
    registered = await arrive(
        stack, pipeline_name, frame.assign(cohort=np.where(frame.index % 2, "odd", "even"))
    )
    assert registered.status == "PendingManualApproval"
    browser.visit("/")
    if browser.all("#logout"):  # signed in by an earlier test: this one starts signed out
        browser.submit("#logout")
    browser.visit(f"/groups/{pipeline_name}")
    assert browser.find(".status").text == "PendingManualApproval"
    [evaluated] = stack.watcher.events(ModelEvaluated, correlation_id=registered.correlation_id)
    assert isinstance(evaluated, ModelEvaluated) and evaluated.report is not None
    report = json.loads(stack.store.get_verified(stack.store.locate(evaluated.report.uri)))["scores"]
    for group in ("even", "odd"):
        shown = browser.find(f'#bias tr[data-group="{group}"] td[data-metric="accuracy"]').text
        assert shown == f"{report['by_group'][group]['metrics']['accuracy']:.4f}", group
    assert (
        browser.find('#bias tr.gap td[data-metric="accuracy"]').text
        == f"{report['group_gaps']['accuracy']:.4f}"
    )
    browser.submit("#approve")
    assert browser.find("#error-title").text == "401 Sign-in needed"
    browser.visit(f"/groups/{pipeline_name}")
    browser.sign_in("not-a-token")
    assert browser.find("#error-message").text.startswith("Unknown token")
    assert browser.errors(expected_statuses=(401,)) == []
    browser.visit(f"/groups/{pipeline_name}")
    browser.sign_in(TOKEN)
    browser.find('input[name="comment"]').send_keys("looks <b>good</b>")
    browser.submit("#approve")
    assert notice(browser) == "version 1 approved"
    deployed = await wait_deployed(stack, registered.correlation_id)
    with PredictionClient(deployed.endpoint_url) as client:
        assert client.predict(ROW).version == 1
    browser.visit(f"/groups/{pipeline_name}")
    assert browser.find(".status").text == "Approved"
    assert "looks <b>good</b>" in browser.find("main").text  # the comment is text, not markup
    assert browser.all("#lineage li") and browser.all("#gates tbody tr")
    browser.screenshot("model-group")
    assert browser.errors() == []


async def test_a_dead_letter_is_shown_as_text_and_replayed_by_click(
    stack: Stack, console: str, browser: Browser
) -> None:
    settings = stack.settings
    topic = f"test-console-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic])
    payload = b'<script>window.conveyorPwned = 1</script><img src=x onerror="window.conveyorPwned = 2">'
    broker = create_broker(settings)
    await broker.connect()
    try:
        letter = DeadLetter(
            source_topic=topic,
            partition=0,
            offset=0,
            group_id="test",
            key=b"k",
            value=payload,
            original_headers={"origin": "<i>test</i>"},
            reason="invalid_payload",
            error_type="ValidationError",
            error="<script>window.conveyorPwned = 3</script>",
            attempts=1,
        )
        await publish_dead_letter(broker, letter)
    finally:
        await broker.stop()
    browser.visit(f"/dead-letters?topic={quote(topic)}.dlq")
    rows = browser.all("tr.letter")
    assert len(rows) == 1
    assert rows[0].find_element("css selector", ".replayed").text == "no"
    assert "<script>window.conveyorPwned = 3</script>" in rows[0].text
    browser.find("tr.letter summary").click()
    assert browser.find("pre.payload").text == payload.decode()
    assert browser.script("return window.conveyorPwned") is None
    assert len(browser.all("script")) == 2 and not browser.all("main img")
    browser.screenshot("dead-letters")
    if not browser.all("#logout"):
        browser.sign_in(TOKEN)
    browser.submit("#replay")
    assert notice(browser) == f"1 letters replayed from {topic}.dlq"
    assert browser.find("tr.letter .replayed").text == "yes"
    assert await _values(settings, topic) == [payload]
    assert browser.errors() == []


async def test_markup_in_an_event_field_stays_text(stack: Stack, console: str, browser: Browser) -> None:
    pipeline = f"e2e-{uuid.uuid4().hex[:8]}"
    uri = f"s3://{stack.settings.landing_bucket}/{pipeline}/<script>window.conveyorPwned=4</script>.csv"
    event = DataArrived.first(producer="test", pipeline=pipeline, uri=uri)
    broker = create_broker(stack.settings)
    await broker.connect()
    try:
        await KafkaEventPublisher(broker).publish(event)
    finally:
        await broker.stop()
    await stack.watcher.wait_for(DatasetRejected, correlation_id=event.correlation_id, timeout=60)
    page = f"/arrivals/{event.correlation_id}"
    await until(
        lambda: "DatasetRejected" in httpx.get(console + page).text, timeout=60, what="rejection read"
    )
    browser.visit(page)
    assert step_state(browser, "validated") == "failed" and step_state(browser, "trained") == "skipped"
    browser.find("#graph details summary").click()
    assert "<script>window.conveyorPwned=4</script>" in browser.find("#graph pre").text
    browser.visit("/")
    assert pipeline in browser.find("#pipelines").text
    assert browser.script("return window.conveyorPwned") is None
    assert browser.errors() == []


async def test_no_page_logs_a_javascript_error(stack: Stack, console: str, browser: Browser) -> None:
    for path in ("/", "/deployments", "/dead-letters"):
        browser.visit(path)
        assert browser.find("h1").text
        assert browser.errors() == [], path
    browser.visit("/")
    browser.screenshot("pipelines")
    links = [a.get_attribute("href") for a in browser.all("#pipelines a")]
    ours = [link for link in links if link and ("/groups/e2e-" in link or "/arrivals/" in link)]
    for link in ours[:8]:
        assert link is not None
        browser.driver.get(link)
        assert browser.errors() == [], link
    assert browser.seen_errors == []


async def test_forms_without_the_session_csrf_token_are_refused(stack: Stack, console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "conveyor_session" in page.cookies
        forged = await client.post("/login", data={"token": TOKEN, "csrf": "forged"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        client.cookies.set("conveyor_token", TOKEN)
        replay = await client.post("/dead-letters/replay", data={"topic": "x"})
        assert replay.status_code == 403
        assert "conveyor_token" not in (await client.get("/")).headers.get("set-cookie", "")


async def _values(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for partition, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(partition, offset)
        values: list[bytes] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value or b"" for r in batch)
        return values
    finally:
        await stop_consumer(consumer)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or {0}
