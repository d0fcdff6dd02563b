"""Batch prediction: score an object-store file with the same prediction code the endpoints run."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from services.deploy.artifacts import ArtifactRefused, ensure_imported
from services.deploy.records import ApprovedVersion, DeploymentRecord
from services.deploy.serving.model_store import load_stored
from services.deploy.serving.predict import ModelCard, Predictions, features_frame, predict_frame
from shared.events import BatchPredictionCompleted, BatchPredictionFailed, BatchPredictionRequested, Event
from shared.storage import ArtifactStore, ObjectConflictError, ObjectNotFoundError
from shared.uris import ObjectLocation, UnsafeUriError

PRODUCER = "deploy"
OUTPUT_PREFIX = "predictions"
ROW_COLUMN = "row"
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"


class BatchRefused(ValueError):
    """An input that cannot be scored (an unknown format, say)."""


@dataclass(frozen=True)
class ScoredFile:
    """Where a batch job wrote its predictions, and how many rows it scored."""

    uri: str
    rows: int


def read_table(data: bytes, *, key: str) -> pd.DataFrame:
    """A CSV or Parquet object as a frame, by its key's extension."""
    if key.lower().endswith(".csv"):
        return pd.read_csv(io.BytesIO(data))
    if key.lower().endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    raise BatchRefused(f"{key!r} is neither .csv nor .parquet")


def prediction_table(frame: pd.DataFrame, predicted: Predictions, card: ModelCard) -> pd.DataFrame:
    """The input's key (non-feature) columns, the row number, and the predictions next to them."""
    produced = {ROW_COLUMN, PREDICTION_COLUMN, *(f"{PROBABILITY_PREFIX}{c}" for c in card.classes)}
    keys = [column for column in frame.columns if column not in card.features]
    table = (
        frame[keys].rename(columns={c: f"input_{c}" for c in keys if c in produced}).reset_index(drop=True)
    )
    table.insert(0, ROW_COLUMN, range(len(frame)))
    table[PREDICTION_COLUMN] = predicted.labels
    if predicted.probabilities is not None:
        for index, label in enumerate(card.classes):
            table[f"{PROBABILITY_PREFIX}{label}"] = predicted.probabilities[:, index]
    return table


def score_file(
    store: ArtifactStore, *, source: ObjectLocation, tag: str, output: ObjectLocation
) -> ScoredFile:
    """Score every row of ``source`` with the model ``tag`` and write the table to ``output`` (Parquet)."""
    frame = read_table(store.read(source), key=source.key)
    model, card = load_stored(tag)
    predicted = predict_frame(model, features_frame(frame, card), card)
    buffer = io.BytesIO()
    prediction_table(frame, predicted, card).to_parquet(buffer, index=False)
    with contextlib.suppress(ObjectConflictError):  # a redelivered request: the first output stands
        store.put(output, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    return ScoredFile(uri=output.uri, rows=len(frame))


class BatchJobs:
    """Runs batch prediction requests against the versions the deploy service knows."""

    def __init__(
        self, *, store: ArtifactStore, bucket: str, lookup: Callable[[str], DeploymentRecord | None]
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._lookup = lookup

    async def run(self, event: BatchPredictionRequested) -> Event:
        """Score the requested file, or say why it cannot be scored."""
        started = time.perf_counter()
        record = self._lookup(event.pipeline)
        version = record.batch_version(event.version) if record is not None else None
        if version is None:
            wanted = f"version {event.version}" if event.version else "a version"
            return self._failed(
                event, f"{event.pipeline} has no approved {wanted} known to the deploy service"
            )
        try:
            source = self._store.locate(event.input_uri)
            scored = await asyncio.to_thread(self._score, event, source, version)
        except (UnsafeUriError, ObjectNotFoundError, ArtifactRefused, ValueError) as error:
            return self._failed(event, f"{type(error).__name__}: {error}", version=version.version)
        return BatchPredictionCompleted.caused_by(
            event,
            producer=PRODUCER,
            version=version.version,
            input_uri=event.input_uri,
            output_uri=scored.uri,
            rows=scored.rows,
            duration_seconds=time.perf_counter() - started,
        )

    def _score(
        self, event: BatchPredictionRequested, source: ObjectLocation, version: ApprovedVersion
    ) -> ScoredFile:
        tag = ensure_imported(version, store=self._store)
        output = ObjectLocation(
            self._bucket, f"{OUTPUT_PREFIX}/{event.pipeline}/v{version.version}/{event.event_id}.parquet"
        )
        return score_file(self._store, source=source, tag=tag, output=output)

    @staticmethod
    def _failed(event: BatchPredictionRequested, reason: str, *, version: int | None = None) -> Event:
        return BatchPredictionFailed.caused_by(
            event,
            producer=PRODUCER,
            input_uri=event.input_uri,
            version=version or event.version,
            reason=reason[:4000],
        )
