"""Batch prediction: score an object-store file with the same prediction code the endpoints run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from services.deploy.artifacts import ArtifactRefused, ensure_imported
from services.deploy.batch_io import input_batches, score_batches
from services.deploy.batch_spark import SparkEngine
from services.deploy.batch_spark_parts import S3Access, shipped_model
from services.deploy.batch_spark_settings import SparkSettings
from services.deploy.records import ApprovedVersion, DeploymentRecord
from services.deploy.serving.model_store import load_runtime
from services.deploy.serving.predict import ModelCard
from services.deploy.serving.runtime import Runtime
from shared.events import BatchPredictionCompleted, BatchPredictionFailed, BatchPredictionRequested, Event
from shared.settings import Settings
from shared.storage import ArtifactStore, ObjectConflictError, ObjectNotFoundError
from shared.uris import ObjectLocation, UnsafeUriError

PRODUCER = "deploy"
OUTPUT_PREFIX = "predictions"
# Verified models kept in memory between jobs (a few: each may be large).
MODELS_KEPT = 4
# Inputs that cannot be scored: answered with BatchPredictionFailed rather than retried. Arrow's
# ArrowInvalid (a file that is no Parquet, a value of the wrong type) is a ValueError already.
REFUSALS = (UnsafeUriError, ObjectNotFoundError, ArtifactRefused, ValueError, pa.ArrowTypeError)


@dataclass(frozen=True)
class ScoredFile:
    """Where a batch job wrote its predictions, and how many rows it scored."""

    uri: str
    rows: int


def score_file(
    store: ArtifactStore,
    *,
    source: ObjectLocation,
    model: Any = None,
    card: ModelCard,
    output: ObjectLocation,
    runtime: Runtime | None = None,
) -> ScoredFile:
    """Score every row of ``source`` through ``runtime`` (or ``model``); predictions go to ``output``."""
    batches = input_batches(store.open(source), key=source.key)
    # The output (row numbers, keys and predictions: a few columns, however wide the input) is held
    # until it is put, since objects are written whole, once, with their digest.
    sink = pa.BufferOutputStream()
    rows = score_batches(batches, model=model, card=card, sink=sink, runtime=runtime)
    with contextlib.suppress(ObjectConflictError):  # a redelivered request: the first output stands
        store.put(output, sink.getvalue().to_pybytes(), content_type="application/vnd.apache.parquet")
    return ScoredFile(uri=output.uri, rows=rows)


class BatchJobs:
    """Runs batch prediction requests against the versions the deploy service knows."""

    def __init__(
        self,
        *,
        store: ArtifactStore,
        bucket: str,
        lookup: Callable[[str], DeploymentRecord | None],
        spark: SparkEngine | None = None,
        threads: int = 0,
    ) -> None:
        self._store = store
        self._threads = threads or os.cpu_count() or 1
        self._bucket = bucket
        self._lookup = lookup
        # Jobs with engine "spark": the session (a driver JVM) starts with the first of them.
        self._spark = spark or SparkEngine(spark=SparkSettings(), access=S3Access.from_settings(Settings()))
        self._models: dict[tuple[str, int, str], Runtime] = {}
        self._models_lock = threading.Lock()

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
            score = self._score_on_spark if event.engine == "spark" else self._score
            scored = await asyncio.to_thread(score, event, source, version)
        except REFUSALS as error:
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
        runtime = self._runtime(version)
        output = ObjectLocation(
            self._bucket, f"{OUTPUT_PREFIX}/{event.pipeline}/v{version.version}/{event.event_id}.parquet"
        )
        return score_file(self._store, source=source, card=runtime.card, output=output, runtime=runtime)

    def _score_on_spark(
        self, event: BatchPredictionRequested, source: ObjectLocation, version: ApprovedVersion
    ) -> ScoredFile:
        # The artifact verified against MinIO into the BentoML store, its bytes checked again here.
        model = shipped_model(ensure_imported(version, store=self._store))
        output = ObjectLocation(
            self._bucket, f"{OUTPUT_PREFIX}/{event.pipeline}/v{version.version}/{event.event_id}"
        )
        scored = self._spark.score(
            self._store, source=source, model=model, output=output, master=event.spark_master
        )
        return ScoredFile(uri=scored.uri, rows=scored.rows)

    def _runtime(self, version: ApprovedVersion) -> Runtime:
        """The version's runtime (the endpoint's, with the jobs' threads), loaded once per process.

        Keyed by the artifact's digest: the model in memory is the one verified when it was loaded,
        so checking the file in the model store again for every job (and rebuilding a forest from
        it) would only repeat work.
        """
        key = (version.card.pipeline, version.version, version.card.sha256)
        with self._models_lock:
            if key not in self._models:
                tag = ensure_imported(version, store=self._store)
                runtime, _, _ = load_runtime(tag, threads=self._threads)
                if len(self._models) >= MODELS_KEPT:
                    del self._models[next(iter(self._models))]  # the oldest
                self._models[key] = runtime
            return self._models[key]

    @staticmethod
    def _failed(event: BatchPredictionRequested, reason: str, *, version: int | None = None) -> Event:
        return BatchPredictionFailed.caused_by(
            event,
            producer=PRODUCER,
            input_uri=event.input_uri,
            version=version or event.version,
            reason=reason[:4000],
        )
