"""How fitted models are written and read: skops, with an explicit allow-list of types.

A pickle from an untrusted place is code execution (MLflow CVE-2024-37052…37060). skops
refuses to build any type it is not told to trust; the list below covers the allow-listed
scikit-learn estimators, and anything else in an artifact is refused before it is built.
Digests are checked before this code ever sees the bytes.
"""

from __future__ import annotations

from typing import Any

import skops.io as sio

MEDIA_TYPE = "application/vnd.skops"
SUFFIX = ".skops"

TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        # Our own preprocessing step (one category for 1, 1.0 and "1"), importable wherever Conveyor is.
        "services.train.fitting.as_categories_frame",
        # Declared feature engineering (derived columns, log transform): plain parameters, our code.
        "shared.features.transformers.DerivedColumns",
        "shared.features.transformers.LogTransform",
        "services.train.fitting.as_text_array",
    }
)


class UntrustedModelError(Exception):
    """The artifact would build types outside the allow-list; it is not loaded."""


def dump_model(model: Any) -> bytes:
    """The skops bytes of a fitted model."""
    return sio.dumps(model)


def load_model(data: bytes) -> Any:
    """Rebuild a model, refusing any type outside skops' defaults and ``TRUSTED_TYPES``."""
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as error:  # not a skops archive at all (a pickle, say)
        raise UntrustedModelError(f"not a skops model artifact: {error}") from error
    refused = untrusted - TRUSTED_TYPES
    if refused:
        raise UntrustedModelError(f"model artifact contains types outside the allow-list: {sorted(refused)}")
    return sio.loads(data, trusted=sorted(untrusted))
