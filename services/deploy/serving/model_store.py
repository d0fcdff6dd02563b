"""Approved models in the BentoML model store: skops bytes plus the card that says how to serve them.

Only the skops artifact is stored (never a pickle); the digest recorded at training travels in
the card and is checked again whenever a server loads the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from services.deploy.serving.predict import ModelCard
from shared.model_format import SUFFIX, load_model
from shared.storage import IntegrityError, sha256_hex

MODEL_FILE = f"model{SUFFIX}"
CARD_KEY = "conveyor_card"


def model_tag(pipeline: str, version: int) -> str:
    """The BentoML tag of a pipeline's model version."""
    return f"{pipeline}:v{version}"


def save_model(card: ModelCard, data: bytes) -> str:
    """Store a verified artifact under its tag, once; a stale copy with other bytes is replaced."""
    tag = model_tag(card.pipeline, card.version)
    stored = stored_card(tag)
    if stored is not None and stored.sha256 == card.sha256 and _file_digest(tag) == card.sha256:
        return tag
    if stored is not None:
        bentoml.models.delete(tag)
    labels = {"pipeline": card.pipeline, "version": str(card.version), "format": "skops"}
    metadata = {CARD_KEY: card.model_dump(mode="json")}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        Path(model.path_of(MODEL_FILE)).write_bytes(data)
    return tag


def stored_card(tag: str) -> ModelCard | None:
    """The card of a stored model, or None when the store does not hold it."""
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        return None
    return ModelCard.model_validate(model.info.metadata[CARD_KEY])


def load_stored(tag: str) -> tuple[Any, ModelCard]:
    """The model and its card, the bytes checked against the recorded digest before loading."""
    model = bentoml.models.get(tag)
    card = ModelCard.model_validate(model.info.metadata[CARD_KEY])
    data = Path(model.path_of(MODEL_FILE)).read_bytes()
    if sha256_hex(data) != card.sha256:
        raise IntegrityError(f"model {tag} in the BentoML store does not match its digest {card.sha256}")
    return load_model(data), card


def _file_digest(tag: str) -> str | None:
    path = Path(bentoml.models.get(tag).path_of(MODEL_FILE))
    return sha256_hex(path.read_bytes()) if path.exists() else None
