"""Event-bus overhead: a Conveyor consumer against a raw aiokafka loop doing the same work.

Both read the same pre-filled topic from the start, each in a consumer group of its own, and for
every message: check its size, validate it as a ``DataArrived``, run the same handler, publish the
``DatasetRejected`` it returns (idempotent producer, ``acks=all``, waited for), and commit the
offset. Conveyor's side is ``shared.messaging.subscribe`` on a broker made as a service makes it
(trace middleware, JSON logs at INFO to a file).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import DataArrived, DatasetRejected, Event, RuleResult
from shared.logs import JsonFormatter
from shared.messaging import KafkaEventPublisher, create_broker, ensure_topics, subscribe
from shared.messaging.publisher import EVENT_TYPE_HEADER, encode
from shared.telemetry import setup_telemetry
from tests.bench.harness import BenchContext
from tests.bench.load import median
from tests.bench.report import Section, now

PIPELINES = [f"bench-bus-{index:02d}" for index in range(24)]

ANALYSIS = """
Both loops are bound by the two broker round trips each message costs, one after the other: the
publish waited for with `acks=all`, then the offset commit (about 7 ms together on this loaded
machine). They are identical on both sides, so the ratio prices what Conveyor adds in Python,
about 1 ms per message: FastStream's subscriber machinery (context, middlewares, the decoder we
keep raw), the OpenTelemetry middleware (a consumer span and a producer span with header
injection), two JSON log lines per message ("Received", "Processed") and the pydantic envelope.
Committing after every message and waiting for every publish is the price of at-least-once
without loss; committing every N messages or T ms, with the publishes of a batch awaited
together, would raise both figures several-fold, at the cost of more redelivery after a crash.
"""


def handler_work(event: DataArrived) -> DatasetRejected:
    """The handler both loops run: a typed event out of the typed event in."""
    return DatasetRejected.caused_by(
        event,
        producer="bench",
        source_uri=event.uri,
        failures=[RuleResult(rule="bench.rule", passed=False, message="benchmark")],
    )


@dataclass
class Progress:
    """When each message was handled (first and last)."""

    expected: int
    handled: int = 0
    first: float = 0.0
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def tick(self) -> None:
        """One more message handled."""
        now_s = time.perf_counter()
        if self.handled == 0:
            self.first = now_s
        self.handled += 1
        self.last = now_s
        if self.handled >= self.expected:
            self.done.set()

    @property
    def rate(self) -> float:
        """Messages per second between the first and the last handled."""
        span = self.last - self.first
        return (self.handled - 1) / span if span > 0 and self.handled > 1 else float("nan")


class ToTopic:
    """An event publisher port that sends every event to one topic (the benchmark's output)."""

    def __init__(self, inner: KafkaEventPublisher, topic: str) -> None:
        self._inner = inner
        self._topic = topic

    async def publish(self, event: Event, *, topic: str | None = None) -> None:
        """Publish ``event`` on the benchmark's topic."""
        await self._inner.publish(event, topic=self._topic)


async def _prefill(context: BenchContext, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=context.settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for index in range(count):
            pipeline = PIPELINES[index % len(PIPELINES)]
            event = DataArrived.first(
                producer="bench", pipeline=pipeline, uri=f"s3://conveyor-landing/{pipeline}/{index}.csv"
            )
            pending.append(await producer.send(topic, encode(event), key=event.key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _conveyor(context: BenchContext, *, source: str, sink: str, count: int, timeout_s: float) -> float:
    settings = context.settings
    telemetry = setup_telemetry("bench-bus", settings)
    broker = create_broker(settings, telemetry=telemetry)
    progress = Progress(expected=count)

    async def on_data_arrived(event: DataArrived) -> Event:
        """The benchmark's handler."""
        output = handler_work(event)
        progress.tick()
        return output

    subscribe(
        broker,
        event_type=DataArrived,
        handler=on_data_arrived,
        group_id=f"bench-bus-conveyor-{uuid.uuid4().hex[:8]}",
        publisher=ToTopic(KafkaEventPublisher(broker), sink),
        settings=settings,
        topic=source,
    )
    log_file = context.scratch("bus") / "conveyor-consumer.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter("bench-bus"))
    logger = logging.getLogger("conveyor")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    await broker.start()
    try:
        await asyncio.wait_for(progress.done.wait(), timeout=timeout_s)
    finally:
        await broker.stop()
        telemetry.shutdown()
        logger.removeHandler(handler)
        handler.close()
    return progress.rate


async def _raw(context: BenchContext, *, source: str, sink: str, count: int, timeout_s: float) -> float:
    settings = context.settings
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"bench-bus-raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=settings.max_poll_interval_ms,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_request_size=settings.kafka_max_message_bytes,
    )
    await consumer.start()
    await producer.start()
    progress = Progress(expected=count)

    async def loop() -> None:
        while progress.handled < count:
            record = await consumer.getone()
            body: bytes = record.value or b""
            if len(body) > settings.max_event_bytes:
                raise RuntimeError("oversized message in the benchmark topic")
            event = DataArrived.model_validate_json(body)
            if record.key != event.key:
                raise RuntimeError("wrong key in the benchmark topic")
            output = handler_work(event)
            progress.tick()
            headers = [
                ("content-type", b"application/json"),
                (EVENT_TYPE_HEADER, type(output).__name__.encode()),
                ("correlation_id", str(output.correlation_id).encode()),
            ]
            await producer.send_and_wait(sink, encode(output), key=output.key, headers=headers)
            await consumer.commit()

    try:
        await asyncio.wait_for(loop(), timeout=timeout_s)
    finally:
        await consumer.stop()
        await producer.stop()
    return progress.rate


async def _delete_topics(context: BenchContext, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=context.settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def run(context: BenchContext) -> Section:
    """Events per second of both loops over the same topic, alternated."""
    started = time.perf_counter()
    count = 500 if context.quick else 2000
    rounds_n = 1 if context.quick else 3
    source = f"bench.bus.{context.run_id}.in"
    await ensure_topics(context.settings, [source], with_dead_letters=True)
    await _prefill(context, source, count)
    loops = {"conveyor": _conveyor, "raw aiokafka": _raw}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    topics = [source, f"{source}.dlq"]
    try:
        for index in range(rounds_n):
            for name in list(loops) if index % 2 == 0 else list(reversed(loops)):
                sink = f"bench.bus.{context.run_id}.out-{name.split()[0]}-{index}"
                topics.append(sink)
                await ensure_topics(context.settings, [sink], with_dead_letters=False)
                rate = await loops[name](context, source=source, sink=sink, count=count, timeout_s=300)
                rates[name].append(rate)
    finally:
        await _delete_topics(context, topics)
    conveyor, raw = median(rates["conveyor"]), median(rates["raw aiokafka"])
    section = Section(
        key="bus",
        title="3. Event-bus overhead: consumer events/s",
        method=(
            f"{count} `DataArrived` events pre-filled on a 3-partition topic, keyed by {len(PIPELINES)} "
            f"pipelines; each loop consumes all of them from the earliest offset in a new group, "
            f"{rounds_n} alternated round(s), median rate between the first and last message handled. "
            + (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
        ),
        quick=context.quick,
    )
    section.add(
        "events/s, Conveyor vs raw aiokafka",
        conveyor,
        raw,
        unit="events/s",
        digits=0,
        target="≥ 0.8x",
        met=conveyor >= 0.8 * raw,
    )
    section.notes.append(
        "per round (events/s): "
        + "; ".join(f"{name} {', '.join(f'{r:.0f}' for r in values)}" for name, values in rates.items())
    )
    section.notes.append(
        f"per message: Conveyor {1000 / conveyor:.2f} ms, raw {1000 / raw:.2f} ms, "
        f"difference {1000 / conveyor - 1000 / raw:.2f} ms"
    )
    section.analysis = ANALYSIS
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section
