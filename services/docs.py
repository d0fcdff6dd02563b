"""Documents generated from the services' code: the AsyncAPI of every event, the OpenAPI of every HTTP API.

``python -m services.docs`` writes them under ``shared/docs/``; a test fails while they are stale.
Nothing here connects to Kafka, MinIO or anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faststream.specification import AsyncAPI
from faststream.specification.base import Specification

from shared.service import ServiceContext, build_context
from shared.settings import Settings

if TYPE_CHECKING:
    from services.deploy.settings import DeploySettings

DOCS_DIR = Path(__file__).resolve().parents[1] / "shared" / "docs"


def asyncapi_document() -> dict[str, Any]:
    """Every service's subscriptions and publications, with the events' schemas."""
    return json.loads(asyncapi_specification().to_json())


def asyncapi_specification() -> Specification:
    """The AsyncAPI specification object (FastStream renders it as HTML)."""
    from services.deploy.app import create_app as deploy_app
    from services.evaluate.app import create_app as evaluate_app
    from services.ingest.app import create_app as ingest_app
    from services.registry.app import create_app as registry_app
    from services.train.app import create_app as train_app

    builders: dict[str, Callable[..., Any]] = {
        "ingest": ingest_app,
        "train": train_app,
        "evaluate": evaluate_app,
        "registry": registry_app,
        "deploy": deploy_app,
    }
    contexts: list[ServiceContext] = []
    for name, build in builders.items():
        settings = _settings_for(name)
        context = build_context(name, settings)
        build(settings, context=context)
        contexts.append(context)
    document = AsyncAPI(
        contexts[0].broker,
        title="Conveyor events",
        version="1",
        description="The typed events Conveyor's services publish and consume on Kafka. "
        "Every message is keyed by its pipeline name; what cannot be processed goes to <topic>.dlq.",
        schema_version="3.0.0",
    )
    for context in contexts[1:]:
        document.add_broker(context.broker)
    return document.to_specification()


def openapi_documents() -> dict[str, dict[str, Any]]:
    """The OpenAPI documents of the registry, the deploy service and a serving endpoint."""
    from services.deploy.app import create_app as deploy_app
    from services.deploy.serving.openapi import document
    from services.deploy.serving.service import PredictionService
    from services.registry.app import create_app as registry_app

    return {
        "registry": registry_app(_settings_for("registry")).openapi(),
        "deploy": deploy_app(_deploy_settings()).openapi(),
        "serving": document(PredictionService),  # what the endpoint's workers serve at /docs.json
    }


def rendered() -> dict[str, str]:
    """Every document as the text committed under shared/docs/."""
    documents = {"asyncapi.json": asyncapi_document()}
    documents |= {f"{name}.openapi.json": doc for name, doc in openapi_documents().items()}
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in documents.items()}


def write() -> list[Path]:
    """Write every document; returns the files written."""
    DOCS_DIR.mkdir(exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = DOCS_DIR / name
        path.write_text(text)
        written.append(path)
    return written


def _settings_for(name: str) -> Settings:
    # Defaults only (model_construct reads no environment): the documents must not depend on the machine.
    return _deploy_settings() if name == "deploy" else Settings.model_construct()


def _deploy_settings() -> DeploySettings:
    from services.deploy.settings import DeploySettings

    return DeploySettings.model_construct()


if __name__ == "__main__":
    for path in write():
        print(path)
