"""Approved models in the BentoML model store: skops bytes plus the card that says how to serve them.

Only the skops artifact is stored (never a pickle); the digest recorded at training travels in
the card and is checked again whenever a worker loads the model. Beside it lie the version's
warm-up rows and their answers (``services.deploy.serving.warmup``) and, when the version was
proven equal through ONNX Runtime, its ONNX model, whose digest the card's runtime records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from services.deploy.serving.predict import ModelCard
from services.deploy.serving.runtime import OnnxRuntime, Runtime, SklearnRuntime
from services.deploy.serving.warmup import Warmup
from shared.model_format import SUFFIX, load_model
from shared.storage import IntegrityError, sha256_hex

MODEL_FILE = f"model{SUFFIX}"
CARD_KEY = "conveyor_card"
WARMUP_FILE = "warmup.json"
ONNX_FILE = "model.onnx"


def model_tag(pipeline: str, version: int) -> str:
    """The BentoML tag of a pipeline's model version."""
    return f"{pipeline}:v{version}"


def save_model(card: ModelCard, data: bytes, warmup: Warmup, *, onnx: bytes | None = None) -> str:
    """Store a verified artifact, its warm-up and ONNX model under its tag, once; a stale copy is replaced."""
    tag = model_tag(card.pipeline, card.version)
    if is_stored(card):
        return tag
    stored = stored_card(tag)
    if stored is not None:
        bentoml.models.delete(tag)
    labels = {"pipeline": card.pipeline, "version": str(card.version), "format": "skops"}
    # BentoML takes no None in metadata: unset fields (an ONNX digest of a scikit-learn version) are left out.
    metadata = {CARD_KEY: card.model_dump(mode="json", exclude_none=True)}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        Path(model.path_of(MODEL_FILE)).write_bytes(data)
        if onnx is not None:
            Path(model.path_of(ONNX_FILE)).write_bytes(onnx)
        Path(model.path_of(WARMUP_FILE)).write_text(warmup.model_dump_json())
    return tag


def is_stored(card: ModelCard) -> bool:
    """Whether the store holds this version whole: the same bytes, and its warm-up."""
    tag = model_tag(card.pipeline, card.version)
    stored = stored_card(tag)
    if stored is None or stored.sha256 != card.sha256 or _file_digest(tag) != card.sha256:
        return False
    # The runtime chosen where the version was first imported, its ONNX file whole.
    if stored.runtime.name != card.runtime.name or _file_digest(tag, ONNX_FILE) != stored.runtime.onnx_sha256:
        return False
    return Path(bentoml.models.get(tag).path_of(WARMUP_FILE)).exists()


def stored_card(tag: str) -> ModelCard | None:
    """The card of a stored model, or None when the store does not hold it."""
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        return None
    return ModelCard.model_validate(model.info.metadata[CARD_KEY])


def load_stored(tag: str) -> tuple[Any, ModelCard, Warmup]:
    """The model, its card and warm-up, the bytes checked against the recorded digest before loading."""
    model = bentoml.models.get(tag)
    card = ModelCard.model_validate(model.info.metadata[CARD_KEY])
    data = Path(model.path_of(MODEL_FILE)).read_bytes()
    if sha256_hex(data) != card.sha256:
        raise IntegrityError(f"model {tag} in the BentoML store does not match its digest {card.sha256}")
    warmup = Warmup.model_validate_json(Path(model.path_of(WARMUP_FILE)).read_bytes())
    return load_model(data), card, warmup


def load_runtime(tag: str, *, threads: int = 1) -> tuple[Runtime, Any, Warmup]:
    """The runtime the card names, the scikit-learn model (None under ONNX Runtime) and the warm-up.

    The ONNX model's bytes are checked against the digest the deploy service recorded when it
    proved them equal; a pipeline served by scikit-learn is checked as ``load_stored`` does.
    """
    stored = bentoml.models.get(tag)
    card = ModelCard.model_validate(stored.info.metadata[CARD_KEY])
    if card.runtime.name != "onnxruntime":
        model, card, warmup = load_stored(tag)
        return SklearnRuntime(model, card), model, warmup
    data = Path(stored.path_of(ONNX_FILE)).read_bytes()
    if sha256_hex(data) != card.runtime.onnx_sha256:
        raise IntegrityError(f"ONNX model {tag} does not match its digest {card.runtime.onnx_sha256}")
    warmup = Warmup.model_validate_json(Path(stored.path_of(WARMUP_FILE)).read_bytes())
    return OnnxRuntime(data, card, threads=threads), None, warmup


def stored_bytes(tag: str) -> int:
    """The size of what a worker loads of a stored version: its ONNX model, or its skops artifact."""
    stored = bentoml.models.get(tag)
    card = ModelCard.model_validate(stored.info.metadata[CARD_KEY])
    path = Path(stored.path_of(ONNX_FILE if card.runtime.name == "onnxruntime" else MODEL_FILE))
    return path.stat().st_size if path.exists() else 0


def _file_digest(tag: str, name: str = MODEL_FILE) -> str | None:
    path = Path(bentoml.models.get(tag).path_of(name))
    return sha256_hex(path.read_bytes()) if path.exists() else None
