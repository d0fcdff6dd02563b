"""Adaptive batching in a serving worker: concurrent requests share model calls, each keeps its answer."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest

from services.deploy.serving.batching import PredictionBatcher
from services.deploy.serving.predict import Predictions, predict_frame
from tests.unit.deploy.conftest import Fitted


class CountingBatcher(PredictionBatcher):
    """A batcher over the fitted model that counts the model's calls."""

    def __init__(self, fitted: Fitted, *, max_rows: int) -> None:
        super().__init__(self._call_model, max_rows=max_rows)
        self.fitted = fitted
        self.calls = 0

    def _call_model(self, frame: pd.DataFrame) -> Predictions:
        self.calls += 1
        return predict_frame(self.fitted.model, frame, self.fitted.card)


def batcher_for(fitted: Fitted, *, max_rows: int = 256) -> CountingBatcher:
    return CountingBatcher(fitted, max_rows=max_rows)


def requests(fitted: Fitted, sizes: list[int]) -> list[pd.DataFrame]:
    frames, start = [], 0
    for size in sizes:
        frames.append(fitted.frame.iloc[start : start + size].reset_index(drop=True))
        start += size
    return frames


async def test_concurrent_requests_share_one_model_call_and_get_their_own_rows(classifier: Fitted) -> None:
    batcher = batcher_for(classifier)
    frames = requests(classifier, [1, 3, 1, 2, 5])
    answers = await asyncio.gather(*(batcher.predict(frame) for frame in frames))
    assert batcher.calls == 1
    for frame, answer in zip(frames, answers, strict=True):
        alone = predict_frame(classifier.model, frame, classifier.card)
        assert answer.labels == alone.labels
        np.testing.assert_allclose(np.asarray(answer.probabilities), np.asarray(alone.probabilities))


async def test_a_lone_request_is_scored_without_waiting_for_company(classifier: Fitted) -> None:
    batcher = batcher_for(classifier)
    answer = await asyncio.wait_for(batcher.predict(requests(classifier, [1])[0]), timeout=1)
    assert (batcher.calls, len(answer.labels)) == (1, 1)


async def test_a_batch_never_exceeds_its_row_limit(classifier: Fitted) -> None:
    batcher = batcher_for(classifier, max_rows=4)
    frames = requests(classifier, [1] * 10)
    answers = await asyncio.gather(*(batcher.predict(frame) for frame in frames))
    assert batcher.calls == 3  # 4 + 4 + 2 rows
    assert [len(answer.labels) for answer in answers] == [1] * 10


async def test_requests_arriving_while_the_model_runs_make_the_next_batch(classifier: Fitted) -> None:
    batcher = batcher_for(classifier)
    first = asyncio.ensure_future(batcher.predict(requests(classifier, [1])[0]))
    await first
    later = await asyncio.gather(*(batcher.predict(frame) for frame in requests(classifier, [2, 2, 2])))
    assert batcher.calls == 2 and [len(answer.labels) for answer in later] == [2, 2, 2]


async def test_a_request_the_model_cannot_take_fails_alone(classifier: Fitted) -> None:
    batcher = batcher_for(classifier)
    good = requests(classifier, [2, 3])
    bad = classifier.frame.head(1).assign(age=math.nan)  # the logistic regression refuses NaN
    results = await asyncio.gather(
        batcher.predict(good[0]), batcher.predict(bad), batcher.predict(good[1]), return_exceptions=True
    )
    assert isinstance(results[1], ValueError) and "NaN" in str(results[1])
    assert [len(r.labels) for r in (results[0], results[2]) if isinstance(r, Predictions)] == [2, 3]


async def test_a_cancelled_request_does_not_disturb_the_others(classifier: Fitted) -> None:
    batcher = batcher_for(classifier)
    frames = requests(classifier, [1, 1, 1])
    tasks = [asyncio.ensure_future(batcher.predict(frame)) for frame in frames]
    await asyncio.sleep(0)
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(isinstance(results[i], Predictions) for i in (0, 2))


async def test_regressors_batch_too(regressor: Fitted) -> None:
    batcher = batcher_for(regressor)
    frames = requests(regressor, [2, 1])
    answers = await asyncio.gather(*(batcher.predict(frame) for frame in frames))
    assert batcher.calls == 1 and all(answer.probabilities is None for answer in answers)
    assert answers[1].labels == pytest.approx(regressor.model.predict(frames[1]).tolist())
