"""Train one candidate: fit the spec's search on a validated dataset and store the model with its lineage.

The run id comes from dataset version + spec version + code version. Artifacts of an
unfinished run may be overwritten by its retry; the run's record, written last, makes it
finished and everything in it immutable, so a redelivered event finds the run instead of
training twice.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from services.train.fitting import fit_with_search
from services.train.lineage import code_version, derive_run_id, environment_record
from shared.events import ArtifactRef, DatasetValidated
from shared.events.envelope import Frozen
from shared.lineage import LineageRecord
from shared.model_format import MEDIA_TYPE, SUFFIX, dump_model
from shared.pipeline_spec import FeatureSet
from shared.profile import DataProfile
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

PREFIX = "runs"
log = logging.getLogger("conveyor.train")


class FinishedRun(Frozen):
    """The record of a finished training run: what ModelTrained reports."""

    run_id: str
    code_version: str
    model: ArtifactRef
    lineage: ArtifactRef
    hyperparameters: dict[str, Any]
    cv_metric: str
    cv_score: float
    training_seconds: float


class TrainingError(Exception):
    """Fitting failed for a reason in the data or the spec (not the infrastructure)."""


@dataclass(frozen=True)
class TrainPorts:
    """What training needs from the outside world."""

    store: ArtifactStore
    specs: SpecStore
    bucket: str
    training_image: str | None = None
    # Processes for the search and cross-validation (CONVEYOR_TRAIN_N_JOBS; 0: one per core).
    n_jobs: int = 1


def run_id_for(dataset: DatasetValidated) -> str:
    """The id of the run that trains on ``dataset`` with this code."""
    return derive_run_id(
        dataset_version=dataset.dataset_version,
        spec_version=dataset.spec_version,
        code_version=code_version(),
    )


def train(ports: TrainPorts, dataset: DatasetValidated) -> FinishedRun:
    """The finished run for ``dataset``: found if it exists, trained otherwise."""
    run_id = run_id_for(dataset)
    finished = _finished(ports, dataset.pipeline, run_id)
    if finished is not None:
        return finished
    spec = ports.specs.get(dataset.pipeline, dataset.spec_version)
    log.info("fitting %s run %s on dataset %s", dataset.pipeline, run_id, dataset.dataset_version[:12])
    frame = pd.read_parquet(io.BytesIO(ports.store.get(dataset.train)))
    profile = DataProfile.model_validate_json(ports.store.get(dataset.profile))
    features = FeatureSet(numeric=tuple(profile.numeric), categorical=tuple(profile.categorical))
    started = datetime.now(UTC)
    try:
        fit = fit_with_search(spec, frame, features=features, n_jobs=ports.n_jobs)
    except (ValueError, TypeError, KeyError) as error:
        raise TrainingError(f"{type(error).__name__}: {error}") from error
    finished_at = datetime.now(UTC)

    prefix = _run_prefix(dataset.pipeline, run_id)
    # Provisional until the run record exists: a retry after a crash overwrites, never duplicates.
    model = ports.store.replace(
        ObjectLocation(ports.bucket, f"{prefix}/model{SUFFIX}"),
        dump_model(fit.pipeline),
        content_type=MEDIA_TYPE,
    )
    record = LineageRecord(
        run_id=run_id,
        pipeline=dataset.pipeline,
        dataset_version=dataset.dataset_version,
        dataset={
            "raw": dataset.raw,
            "train": dataset.train,
            "test": dataset.test,
            "profile": dataset.profile,
        },
        spec_version=spec.version,
        spec_uri=f"s3://{ports.bucket}/specs/{spec.name}/{spec.version}.yaml",
        code_version=code_version(),
        estimator=spec.estimator.path,
        search_kind=spec.estimator.search.kind,
        search_space=fit.search_space,
        hyperparameters=_json_safe(fit.hyperparameters),
        cv_metric=fit.cv_metric,
        cv_scores=fit.cv_scores,
        cv_score=fit.cv_score,
        seed=spec.seed,
        features={"numeric": list(fit.features.numeric), "categorical": list(fit.features.categorical)},
        environment={**environment_record(), "training_image": ports.training_image},
        started_at=started,
        finished_at=finished_at,
        training_seconds=fit.fit_seconds,
    )
    lineage = ports.store.replace(
        ObjectLocation(ports.bucket, f"{prefix}/lineage.json"), record.model_dump_json(indent=2).encode()
    )
    run = FinishedRun(
        run_id=run_id,
        code_version=record.code_version,
        model=model,
        lineage=lineage,
        hyperparameters=record.hyperparameters,
        cv_metric=fit.cv_metric,
        cv_score=fit.cv_score,
        training_seconds=fit.fit_seconds,
    )
    ports.store.put(_record_location(ports, dataset.pipeline, run_id), run.model_dump_json().encode())
    return run


def _finished(ports: TrainPorts, pipeline: str, run_id: str) -> FinishedRun | None:
    try:
        data = ports.store.get_verified(_record_location(ports, pipeline, run_id))
    except ObjectNotFoundError:
        return None
    return FinishedRun.model_validate_json(data)


def _run_prefix(pipeline: str, run_id: str) -> str:
    return f"{PREFIX}/{safe_segment(pipeline, what='pipeline')}/{safe_segment(run_id, what='run id')}"


def _record_location(ports: TrainPorts, pipeline: str, run_id: str) -> ObjectLocation:
    return ObjectLocation(ports.bucket, f"{_run_prefix(pipeline, run_id)}/run.json")


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for name, value in values.items():
        safe[name] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
    return safe
