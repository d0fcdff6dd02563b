"""Evaluate's loaded models: kept by digest within a budget, verified before they are loaded."""

from __future__ import annotations

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from services.evaluate.loaded_models import LoadedModels
from shared.events import ArtifactRef
from shared.model_format import dump_model
from shared.storage import ArtifactStore, IntegrityError
from shared.uris import ObjectLocation


def stored_model(store: ArtifactStore, bucket: str, name: str, *, c: float) -> ArtifactRef:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=500).fit(x, y)
    return store.put(ObjectLocation(bucket, f"models/{name}.skops"), dump_model(model))


def test_a_model_is_loaded_once_and_kept_by_its_digest(store: ArtifactStore, bucket: str) -> None:
    ref = stored_model(store, bucket, "a", c=1.0)
    models = LoadedModels(store, budget_bytes=10 * ref.size_bytes)
    first = models.load(ref)
    assert models.load(ref) is first
    assert models.digests() == [ref.sha256]
    assert first.C == 1.0 and first.predict(load_iris().data[:3]).shape == (3,)


def test_the_least_recently_used_model_leaves_past_the_budget(store: ArtifactStore, bucket: str) -> None:
    a, b = stored_model(store, bucket, "a", c=1.0), stored_model(store, bucket, "b", c=0.5)
    models = LoadedModels(store, budget_bytes=max(a.size_bytes, b.size_bytes) + 1)
    loaded_a = models.load(a)
    loaded_b = models.load(b)
    assert models.digests() == [b.sha256]
    assert models.load(b) is loaded_b
    assert models.load(a) is not loaded_a  # loaded again from the store
    assert models.digests() == [a.sha256]


def test_a_model_past_the_budget_is_loaded_but_not_kept(store: ArtifactStore, bucket: str) -> None:
    ref = stored_model(store, bucket, "a", c=1.0)
    models = LoadedModels(store, budget_bytes=ref.size_bytes - 1)
    assert models.load(ref).C == 1.0
    assert models.digests() == []


def test_bytes_not_matching_the_digest_are_refused_and_not_kept(store: ArtifactStore, bucket: str) -> None:
    ref = stored_model(store, bucket, "a", c=1.0)
    forged = ref.model_copy(update={"sha256": "0" * 64})
    models = LoadedModels(store, budget_bytes=10 * ref.size_bytes)
    with pytest.raises(IntegrityError):
        models.load(forged)
    assert models.digests() == []
