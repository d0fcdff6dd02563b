"""``conveyor events``: a live, decoded view of the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json

import click
from aiokafka import AIOKafkaConsumer

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console
from shared.events import EVENT_BY_TOPIC
from shared.messaging import client_options, stop_consumer

_SKIPPED = {
    "event_id",
    "occurred_at",
    "schema_version",
    "correlation_id",
    "causation_id",
    "producer",
    "pipeline",
}


@click.group()
def events() -> None:
    """The event stream."""


@events.command()
@click.option("--topic", "topics", multiple=True, help="Only this topic (repeatable); default: all.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event instead of now.")
@click.option("--limit", type=int, help="Stop after this many events.")
@pass_cli
def tail(cli: CliContext, topics: tuple[str, ...], from_beginning: bool, limit: int | None) -> None:
    """Print events as they are published, decoded."""
    unknown = set(topics) - set(EVENT_BY_TOPIC)
    if unknown:
        raise UserError(f"unknown topic {sorted(unknown)[0]!r}; known: {', '.join(sorted(EVENT_BY_TOPIC))}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _tail(cli, list(topics) or sorted(EVENT_BY_TOPIC), from_beginning=from_beginning, limit=limit)
        )


async def _tail(cli: CliContext, topics: list[str], *, from_beginning: bool, limit: int | None) -> None:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=cli.settings.bootstrap_servers,
        **client_options(cli.settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            _show(cli, record.topic, record.value)
            seen += 1
            if limit is not None and seen >= limit:
                return
    finally:
        await stop_consumer(consumer)


def _show(cli: CliContext, topic: str, value: bytes) -> None:
    try:
        event = EVENT_BY_TOPIC[topic].model_validate_json(value)
    except ValueError:
        console.print(f"[red]{topic}: undecodable ({len(value)} bytes)[/]")
        return
    if cli.json_output:
        print(json.dumps({"topic": topic, "event": event.model_dump(mode="json")}), flush=True)
        return
    fields = {k: v for k, v in event.model_dump(mode="json").items() if k not in _SKIPPED}
    summary = ", ".join(f"{k}={_short(v)}" for k, v in fields.items())
    console.print(
        f"{event.occurred_at:%H:%M:%S} [bold]{type(event).__name__}[/] {event.pipeline} "
        f"[dim]corr={str(event.correlation_id)[:8]}[/] {summary}",
        highlight=False,
    )


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
