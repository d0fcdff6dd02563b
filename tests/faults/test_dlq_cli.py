"""`conveyor dlq` on a topic of its own: listing, replaying once, --reason and --limit, user mistakes."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared.messaging.dead_letter import DeadLetter, Reason
from shared.settings import Settings
from shared.topics import dead_letter_topic
from tests.faults.dlq_tools import conveyor
from tests.integration.kafka_tools import read_records

pytestmark = pytest.mark.infra


@pytest.fixture
def cli_settings(settings: Settings) -> Settings:
    """Replay bookkeeping (consumer groups) of this test's own."""
    return settings.model_copy(update={"consumer_group_prefix": f"dlq-cli-{uuid.uuid4().hex[:8]}"})


async def dead_letter(producer: AIOKafkaProducer, topic: str, *, reason: Reason, n: int) -> bytes:
    """Write one dead letter for ``topic`` as the safe consumer would; returns its original bytes."""
    value = json.dumps({"n": n}).encode()
    letter = DeadLetter(
        source_topic=topic,
        partition=0,
        offset=n,
        group_id="test",
        key=b"churn",
        value=value,
        original_headers={"traceparent": f"00-{n:032x}-{n:016x}-01"},
        reason=reason,
        error_type="ValueError",
        error=f"failure {n}",
        attempts=3,
    )
    headers = [(k, v.encode()) for k, v in letter.headers().items()]
    await producer.send_and_wait(letter.topic, value, key=letter.key, headers=headers)
    return value


def replay(settings: Settings, topic: str, *options: str) -> list[dict[str, object]]:
    result = conveyor("--json", "dlq", "replay", topic, *options, settings=settings)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


async def test_replay_sends_each_letter_back_once_with_its_key_and_headers(
    cli_settings: Settings, topic: str, producer: AIOKafkaProducer
) -> None:
    sent = [
        await dead_letter(producer, topic, reason=reason, n=n)
        for n, reason in enumerate(
            ["retry_exhausted", "invalid_payload", "retry_exhausted", "retry_exhausted"]
        )
    ]
    listed = conveyor("--json", "dlq", "list", topic, settings=cli_settings)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert [(x["reason"], x["attempts"], x["replayed"]) for x in letters] == [
        ("retry_exhausted", 3, False),
        ("invalid_payload", 3, False),
        ("retry_exhausted", 3, False),
        ("retry_exhausted", 3, False),
    ]
    assert letters[0]["source_topic"] == topic and letters[0]["error"] == "failure 0"

    first = replay(cli_settings, topic, "--reason", "retry_exhausted", "--limit", "2")
    rest = replay(cli_settings, topic, "--reason", "retry_exhausted")
    assert replay(cli_settings, topic, "--reason", "retry_exhausted") == []
    everything_else = replay(cli_settings, dead_letter_topic(topic))  # the dead-letter name works too
    assert [x["error"] for x in first] == ["failure 0", "failure 2"]
    assert [x["error"] for x in rest] == ["failure 3"]
    assert [x["error"] for x in everything_else] == ["failure 1"]
    assert replay(cli_settings, topic) == []

    records = await read_records(cli_settings, topic, count=4)
    assert sorted(r.value for r in records) == sorted(sent)
    for record in records:
        n = json.loads(record.value)["n"]
        headers = dict(record.headers)
        assert record.key == b"churn"
        assert headers["traceparent"] == f"00-{n:032x}-{n:016x}-01".encode()
        assert headers["conveyor-dlq-replayed-from"].startswith(dead_letter_topic(topic).encode())
    relisted = json.loads(conveyor("--json", "dlq", "list", topic, settings=cli_settings).stdout)
    assert all(x["replayed"] for x in relisted)


def test_mistakes_are_one_line_errors(cli_settings: Settings) -> None:
    unknown = conveyor("dlq", "list", "conveyor.nope", settings=cli_settings)
    assert unknown.returncode == 1 and "no dead-letter topic 'conveyor.nope.dlq'" in unknown.stderr
    unreachable = conveyor(
        "dlq", "replay", "conveyor.data.arrived", settings=cli_settings.model_copy(update={"kafka_port": 1})
    )
    assert unreachable.returncode == 1 and "Kafka unreachable at 127.0.0.1:1" in unreachable.stderr
    for result in (unknown, unreachable):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    bad_reason = conveyor(
        "dlq", "replay", "conveyor.data.arrived", "--reason", "bored", settings=cli_settings
    )
    bad_limit = conveyor("dlq", "replay", "conveyor.data.arrived", "--limit", "0", settings=cli_settings)
    assert bad_reason.returncode == 2 and "'bored' is not one of" in bad_reason.stderr
    assert bad_limit.returncode == 2 and "0 is not in the range x>=1" in bad_limit.stderr
