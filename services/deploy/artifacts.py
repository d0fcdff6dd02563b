"""From an approval to a model in the BentoML store: fetch, verify, refuse untrusted content, import.

The artifact's bytes are checked against the digest recorded at training (``store.get``) and
then rebuilt by skops with its type allow-list before anything else happens; only then are the
lineage and the spec read to learn the model's features and task. Rows of the version's own test
split are scored here and stored with their answers: every worker checks them before it serves.
"""

from __future__ import annotations

import importlib
import io
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from services.deploy.records import ApprovedVersion
from services.deploy.serving.model_store import is_stored, model_tag, save_model
from services.deploy.serving.predict import FeatureError, ModelCard
from services.deploy.serving.warmup import Warmup, sample
from shared.events import ServableVersion
from shared.lineage import LineageRecord
from shared.model_format import UntrustedModelError, load_model
from shared.pipeline_spec import SpecError
from shared.profile import DataProfile
from shared.spec_store import SpecStore, UnknownPipelineError
from shared.storage import ArtifactStore, IntegrityError, ObjectNotFoundError
from shared.uris import UnsafeUriError

# Failures no retry can mend: the approval is answered with DeploymentFailed.
REFUSALS = (
    IntegrityError,
    ObjectNotFoundError,
    UnsafeUriError,
    UntrustedModelError,
    UnknownPipelineError,
    SpecError,
    ValidationError,
    FeatureError,
)


class ArtifactRefused(Exception):
    """The approved model cannot be served; the reason is meant for DeploymentFailed."""


def import_approved(event: ServableVersion, *, store: ArtifactStore, specs: SpecStore) -> ApprovedVersion:
    """Verify and load the approved artifact, then import it into the BentoML store."""
    try:
        data = store.get(event.model)
        model = _load(data)
        lineage = read_lineage(store, event.lineage.lineage_uri)
        spec = specs.get(event.pipeline, event.lineage.spec_version)
    except REFUSALS as error:
        raise ArtifactRefused(f"{type(error).__name__}: {error}") from error
    card = ModelCard(
        pipeline=event.pipeline,
        version=event.version,
        task=spec.task,
        numeric=tuple(lineage.features.get("numeric", ())),
        categorical=tuple(lineage.features.get("categorical", ())),
        classes=_classes(model) if spec.task == "classification" else (),
        sha256=event.model.sha256,
    )
    save_model(card, data, _warmup(store, lineage, model, card))
    return ApprovedVersion.of(event, card)


def ensure_imported(version: ApprovedVersion, *, store: ArtifactStore) -> str:
    """The version's BentoML tag, re-importing it from MinIO (verified) if this machine lacks it."""
    if not is_stored(version.card):
        try:
            data = store.get(version.model)
            model = _load(data)
            warmup = _warmup(store, read_lineage(store, version.lineage_uri), model, version.card)
        except REFUSALS as error:
            raise ArtifactRefused(f"{type(error).__name__}: {error}") from error
        save_model(version.card, data, warmup)
    return model_tag(version.card.pipeline, version.version)


def load_store_code() -> None:
    """Import BentoML's model-store code now: about a second, otherwise spent inside the first approval."""
    importlib.import_module("bentoml.models")


def read_lineage(store: ArtifactStore, lineage_uri: str) -> LineageRecord:
    """A model's lineage record, verified against its stored digest."""
    return LineageRecord.model_validate_json(store.get_verified(store.locate(lineage_uri)))


def read_profile(store: ArtifactStore, lineage_uri: str) -> DataProfile:
    """The training data's profile named by a model's lineage record."""
    lineage = read_lineage(store, lineage_uri)
    return DataProfile.from_json(store.get(lineage.dataset["profile"]))


def _warmup(store: ArtifactStore, lineage: LineageRecord, model: Any, card: ModelCard) -> Warmup:
    """Rows of the version's test split, with the answers the model gives them here."""
    test_split = pd.read_parquet(io.BytesIO(store.get(lineage.dataset["test"])))
    return sample(model, card, test_split)


def _load(data: bytes) -> Any:
    try:
        return load_model(data)
    except UntrustedModelError:
        raise
    except Exception as error:  # a skops archive that does not rebuild is no model to serve
        raise UntrustedModelError(f"the artifact could not be loaded: {error}") from error


def _classes(model: Any) -> tuple[Any, ...]:
    classes = getattr(model, "classes_", None)
    if classes is None:
        raise ArtifactRefused("a classification model must expose classes_")
    return tuple(np.asarray(classes).tolist())
