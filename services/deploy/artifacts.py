"""From an approval to a model in the BentoML store: fetch, verify, refuse untrusted content, import.

The artifact's bytes are checked against the digest recorded at training (``store.get``) and
then rebuilt by skops with its type allow-list before anything else happens; only then are the
lineage and the spec read to learn the model's features and task. Rows of the version's own test
split are scored here and stored with their answers: every worker checks them before it serves.
The whole test split decides the runtime: ONNX Runtime where the converted pipeline is proven
equal on it (``services.deploy.compile``), scikit-learn otherwise, with the reason on the card.
"""

from __future__ import annotations

import importlib
import io
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from services.deploy.compile import choose_runtime
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


def import_approved(
    event: ServableVersion, *, store: ArtifactStore, specs: SpecStore, onnx: bool = True
) -> ApprovedVersion:
    """Verify and load the approved artifact, choose its runtime, then import it into the BentoML store."""
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
    card, warmup, compiled = _prepare(store, lineage, model, card, onnx=onnx)
    save_model(card, data, warmup, onnx=compiled)
    return ApprovedVersion.of(event, card)


def ensure_imported(version: ApprovedVersion, *, store: ArtifactStore) -> str:
    """The version's BentoML tag, re-importing it from MinIO (verified) if this machine lacks it.

    A version recorded as served by ONNX Runtime is converted and proven again; should the new
    proof not hold here, it serves with scikit-learn and its card in the store says why.
    """
    if not is_stored(version.card):
        onnx = version.card.runtime.name == "onnxruntime"
        try:
            data = store.get(version.model)
            model = _load(data)
            lineage = read_lineage(store, version.lineage_uri)
            card, warmup, compiled = _prepare(store, lineage, model, version.card, onnx=onnx)
        except REFUSALS as error:
            raise ArtifactRefused(f"{type(error).__name__}: {error}") from error
        save_model(card, data, warmup, onnx=compiled)
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


def _prepare(
    store: ArtifactStore, lineage: LineageRecord, model: Any, card: ModelCard, *, onnx: bool
) -> tuple[ModelCard, Warmup, bytes | None]:
    """The card with its runtime chosen on the whole test split, the warm-up rows, the ONNX bytes."""
    test_split = pd.read_parquet(io.BytesIO(store.get(lineage.dataset["test"])))
    choice = choose_runtime(model, card, test_split, enabled=onnx)
    card = card.model_copy(update={"runtime": choice.runtime})
    return card, sample(model, card, test_split), choice.onnx


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
