"""Prediction capture: sampled, bounded, never blocking; published in batches that fit the wire."""

from __future__ import annotations

import itertools
from uuid import uuid4

import pytest

from services.deploy.serving.capture import CaptureFlusher, CaptureQueue, CaptureSource, to_events
from shared.events import PredictionsCaptured

SOURCE = CaptureSource(pipeline="churn", version=2, correlation_id=uuid4())


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    captures = CaptureQueue(size=3, sample_rate=1.0)
    offered = [captures.offer(f"p{i}", {"age": i}, "yes") for i in range(5)]
    assert offered == [True, True, True, False, False]
    assert (captures.accepted, captures.dropped, len(captures)) == (3, 2, 3)
    assert [c.prediction_id for c in captures.take(10)] == ["p0", "p1", "p2"]


def test_sampling_keeps_about_the_configured_share() -> None:
    draws = itertools.cycle([0.05, 0.5, 0.95, 0.15])
    captures = CaptureQueue(size=100, sample_rate=0.2, sample=lambda: next(draws))
    kept = [captures.offer(f"p{i}", {}, 1) for i in range(8)]
    assert kept == [True, False, False, True] * 2
    assert captures.dropped == 0


def test_take_returns_at_most_the_limit_oldest_first() -> None:
    captures = CaptureQueue(size=10, sample_rate=1.0)
    for i in range(5):
        captures.offer(f"p{i}", {"age": i}, i)
    assert [c.prediction_id for c in captures.take(2)] == ["p0", "p1"]
    assert len(captures) == 3


def test_events_are_split_until_each_fits_the_byte_limit() -> None:
    captures = CaptureQueue(size=100, sample_rate=1.0)
    for i in range(40):
        captures.offer(f"p{i}", {f"feature_{j}": float(j) for j in range(20)}, "yes")
    events = to_events(captures.take(40), source=SOURCE, max_bytes=8_000)
    assert len(events) > 1
    assert all(len(e.model_dump_json()) <= 8_000 for e in events)
    assert [p.prediction_id for e in events for p in e.predictions] == [f"p{i}" for i in range(40)]
    assert {(e.pipeline, e.version, e.correlation_id, e.producer) for e in events} == {
        ("churn", 2, SOURCE.correlation_id, "serving")
    }


async def test_the_flusher_keeps_a_batch_that_failed_and_publishes_it_later() -> None:
    captures = CaptureQueue(size=100, sample_rate=1.0)
    for i in range(3):
        captures.offer(f"p{i}", {"age": i}, "no")
    published: list[PredictionsCaptured] = []
    failures = [ConnectionError("kafka away")]

    async def publish(event: PredictionsCaptured) -> None:
        if failures:
            raise failures.pop()
        published.append(event)

    flusher = CaptureFlusher(
        captures, source=SOURCE, publish=publish, batch_size=10, interval_s=0.01, max_bytes=100_000
    )
    with pytest.raises(ConnectionError):
        await flusher.flush()
    assert published == [] and len(captures) == 0
    await flusher.flush()
    assert [p.prediction_id for p in published[0].predictions] == ["p0", "p1", "p2"]
    assert flusher.published == 3
