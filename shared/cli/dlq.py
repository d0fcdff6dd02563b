"""``conveyor dlq``: what could not be processed, and sending it back once the cause is mended.

The work is in ``shared.messaging.dead_letters`` (the console replays through it too); this module
turns it into commands and one-line errors.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click
from aiokafka.errors import KafkaError

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json, print_table
from shared.messaging.dead_letters import (
    REASONS,
    UNKNOWN_REASON,
    DeadLetterError,
    DeadLetters,
    Letter,
    dead_letter_name,
    read_dead_letters,
    replay,
    replay_group,
)
from shared.topics import DEAD_LETTER_SUFFIX

__all__ = ["REASONS", "UNKNOWN_REASON", "dlq", "replay_group"]


def _run(cli: CliContext, coroutine: Any) -> Any:
    # aiokafka logs each failed connection attempt; the one-line error below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coroutine)
    except DeadLetterError as error:
        raise UserError(str(error)) from None
    except (KafkaError, OSError, TimeoutError) as error:
        raise UserError(f"Kafka unreachable at {cli.settings.bootstrap_servers}: {error}") from None


REASON_CHOICE = click.Choice([*REASONS, UNKNOWN_REASON])


@click.group()
def dlq() -> None:
    """Dead-lettered messages: list them, replay them once the cause is mended."""


@dlq.command("list")
@click.argument("topic")
@click.option("--reason", type=REASON_CHOICE, help="Only letters dead-lettered for this reason.")
@pass_cli
def list_letters(cli: CliContext, topic: str, reason: str | None) -> None:
    """What is dead-lettered from TOPIC: reason, error, attempts, offsets, and whether it was replayed."""
    found: DeadLetters = _run(cli, read_dead_letters(cli.settings, topic))
    letters = [x for x in found.letters if reason in (None, x.reason)]
    if cli.json_output:
        print_json([x.summary(replayed=found.replayed(x)) for x in letters])
        return
    if not letters:
        console.print(f"no dead letters in {found.topic}", highlight=False)
        return
    rows = [
        [
            f"{x.partition}@{x.offset}",
            f"{x.source_partition}@{x.source_offset}",
            x.reason,
            x.attempts,
            x.failed_at[5:19].replace("T", " "),
            "yes" if found.replayed(x) else "no",
            f"{x.error_type}: {_short(x.error)}",
        ]
        for x in letters
    ]
    title = f"{found.topic}: {len(letters)} letters from {found.topic.removesuffix(DEAD_LETTER_SUFFIX)}"
    print_table(title, ["letter", "source", "reason", "tries", "failed at", "replayed", "error"], rows)


@dlq.command("replay")
@click.argument("topic")
@click.option("--reason", type=REASON_CHOICE, help="Only letters dead-lettered for this reason.")
@click.option("--limit", type=click.IntRange(min=1), help="Replay at most this many letters (oldest first).")
@click.option("--token", envvar="CONVEYOR_API_TOKEN", help="An operator's bearer token.")
@pass_cli
def replay_letters(
    cli: CliContext, topic: str, reason: str | None, limit: int | None, token: str | None
) -> None:
    """Re-publish TOPIC's dead letters (original bytes, key and headers) to their source topic, once."""
    cli.require("operator", action="replay dead letters", target=topic, token=token)
    reasons = [reason] if reason else [*REASONS, UNKNOWN_REASON]
    replayed: list[Letter] = _run(cli, replay(cli.settings, topic, reasons=reasons, limit=limit))
    if cli.json_output:
        print_json([x.summary(replayed=True) for x in replayed])
        return
    if not replayed:
        console.print(f"nothing to replay from {dead_letter_name(topic)}")
        return
    for letter in replayed:
        console.print(
            f"replayed {letter.partition}@{letter.offset} ({letter.reason}) to {letter.source_topic}",
            highlight=False,
        )
    console.print(f"{len(replayed)} letters replayed", highlight=False)


def _short(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 60 else line[:57] + "..."
