"""Routing inside a worker during a release: sticky callers, the drawn share, shadow, and windows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from services.deploy.serving.split import MAX_PENDING_SHADOWS, Split


def _split(mode: str = "canary", share: float = 10.0) -> Split:
    # Routing and tallies need only the candidate's version number.
    return Split(candidate=cast(Any, SimpleNamespace(version=2)), mode=cast(Any, mode), share=share)


def test_a_named_caller_always_lands_on_the_same_side_in_every_worker() -> None:
    first, second = _split(), _split()
    callers = [f"caller-{n}" for n in range(2000)]
    sides = [first.to_candidate(c) for c in callers]
    assert sides == [second.to_candidate(c) for c in callers]  # another worker agrees
    assert sides == [first.to_candidate(c) for c in callers]  # and so does the same one later
    assert 140 <= sum(sides) <= 260  # about 10 percent of 2000


def test_unnamed_requests_are_drawn_at_the_share() -> None:
    split = _split(share=30.0)
    drawn = sum(split.to_candidate(None) for _ in range(5000))
    assert 1300 <= drawn <= 1700


def test_shadow_answers_nobody_with_the_candidate_and_compares_alike_answers() -> None:
    split = _split("shadow", share=0.0)
    assert not any(split.to_candidate(c) for c in ("a", "b", None))
    split.compare([1, 0, "1"], [1.0, 1, 1])
    assert (split.compared, split.agreed) == (3, 2)  # 1 and 1.0 and "1" are one label


def test_a_new_window_tallies_afresh_at_its_share() -> None:
    split = _split()
    split.challenger.answered(3.0, [1])
    split.baseline.failed(4.0)
    split.new_window(20.0)
    tallies = split.tallies()
    assert tallies["share"] == 20.0
    assert tallies["candidate"]["requests"] == tallies["baseline"]["requests"] == 0


async def test_a_candidate_behind_skips_copies_instead_of_queueing_them() -> None:
    split = _split("shadow", share=0.0)
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    for _ in range(MAX_PENDING_SHADOWS + 5):
        split.in_background(slow)
    assert split.skipped == 5 and split.tallies()["skipped"] == 5
    release.set()
    await split.drain()
    split.in_background(slow)  # caught up: scored again
    assert split.skipped == 5
    await split.drain()
