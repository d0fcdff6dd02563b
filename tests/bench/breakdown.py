"""In-process timings of each step Conveyor's prediction route takes, and of the baseline's model work."""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

from services.deploy.serving.endpoint import LoadedModel, answer
from services.deploy.serving.io import RowsInput
from services.deploy.serving.metrics import serving_metrics
from services.deploy.serving.monitor import Monitor
from services.deploy.serving.predict import ModelCard, predict_frame, rows_frame
from services.deploy.settings import DeploySettings
from tests.bench.models import Fitted, bodies, rows
from tests.bench.profile import time_call


def card_of(fitted: Fitted) -> ModelCard:
    """The card the deploy service would store with the model."""
    return ModelCard(
        pipeline=fitted.spec.name,
        version=1,
        task="classification",
        numeric=tuple(fitted.data.features),
        classes=tuple(fitted.model.classes_.tolist()),
        sha256="0" * 64,
    )


def step_timings(fitted: Fitted, *, repeat: int) -> dict[str, float]:
    """Median microseconds of each step for one row, measured here (one thread, no HTTP)."""
    card = card_of(fitted)
    model: Any = fitted.model
    body = bodies(fitted.data)[0]
    row = rows(fitted.data)[0]
    frame = rows_frame([row], card)
    features = model[:-1].transform(frame)
    estimator = model[-1]
    loaded = LoadedModel(model=model, card=card)
    monitor = Monitor(
        card=card, settings=DeploySettings(), correlation_id=uuid.uuid4(), metrics=serving_metrics()
    )
    response = answer(loaded, row)
    labels = [response.predictions[0].prediction]
    plain = pd.DataFrame([row], columns=list(card.features))
    timings = {
        "parse body (RowsInput)": lambda: RowsInput.model_validate_json(body),
        "row → frame": lambda: rows_frame([row], card),
        "model: preprocessing": lambda: model[:-1].transform(frame),
        "model: estimator.predict": lambda: estimator.predict(features),
        "model: estimator.predict_proba": lambda: estimator.predict_proba(features),
        "model: predict_frame (preprocessing + one predict_proba)": lambda: predict_frame(model, frame, card),
        "capture + metrics (Monitor.observe)": lambda: monitor.observe([uuid.uuid4().hex], [row], labels),
        "answer() without capture": lambda: answer(loaded, row),
        "response → JSON": lambda: response.model_dump_json(),
        "baseline: DataFrame + predict_proba": lambda: model.predict_proba(
            pd.DataFrame([row], columns=plain.columns)
        ),
    }
    return {name: time_call(call, repeat=repeat) for name, call in timings.items()}


def batching_gain(fitted: Fitted, *, batch: int, repeat: int) -> tuple[float, float]:
    """Model microseconds per row: one row per call, and ``batch`` rows in one call (what batching buys)."""
    card = card_of(fitted)
    model: Any = fitted.model
    many = rows(fitted.data)[:batch]
    one_frame = rows_frame(many[:1], card)
    batch_frame = rows_frame(many, card)
    single = time_call(lambda: predict_frame(model, one_frame, card), repeat=repeat)
    batched = time_call(lambda: predict_frame(model, batch_frame, card), repeat=max(5, repeat // 4))
    return single, batched / batch
