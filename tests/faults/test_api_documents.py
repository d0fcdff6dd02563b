"""A served endpoint's own OpenAPI document: valid, the committed one, and enough to generate a client.

The client is generated at test time by a standard generator (openapi-python-client) from the
document the endpoint serves, then calls the endpoint as a user of that client would. Runs first in
the fault suite (file order), on its served endpoint, so it costs no deployment of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from services.docs import DOCS_DIR
from shared.clients.serving import PredictionClient
from tests.faults.burst import feature_row
from tests.faults.conftest import Served

pytestmark = pytest.mark.infra

PACKAGE = "conveyor_serving_client"
GENERATOR_CONFIG = f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"


@pytest.fixture(scope="module")
def endpoint(served: Served) -> str:
    return served.deployed.endpoint_url


@pytest.fixture(scope="module")
def client_package(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """A client package generated from the endpoint's /docs.json, importable for this module's tests."""
    root = tmp_path_factory.mktemp("generated")
    config = root / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--url", f"{endpoint}/docs.json"]
    options = ["--config", str(config), "--meta", "none", "--output-path", str(root / PACKAGE)]
    generated = subprocess.run(
        [*command, *options, "--fail-on-warning"], capture_output=True, text=True, timeout=120, check=False
    )
    assert generated.returncode == 0, f"the generator refused it:\n{generated.stdout}{generated.stderr}"
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _generated(package: ModuleType, module: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{module}")


async def test_the_endpoint_serves_the_committed_document_and_it_is_valid(endpoint: str) -> None:
    async with httpx.AsyncClient(base_url=endpoint, timeout=10) as client:
        answer = await client.get("/docs.json")
    assert answer.status_code == 200, answer.text
    served = answer.json()
    validate(served)
    assert served == json.loads((DOCS_DIR / "serving.openapi.json").read_text())


async def test_a_generated_client_predicts_one_row_and_a_list_and_sends_feedback(
    endpoint: str, served: Served, client_package: ModuleType
) -> None:
    models = _generated(client_package, "models")
    predict = _generated(client_package, "api.service_ap_is.conveyor_prediction_predict")
    feedback = _generated(client_package, "api.service_ap_is.conveyor_prediction_feedback")
    performance = _generated(client_package, "api.service_ap_is.conveyor_prediction_performance")
    row = feature_row()
    rows = [row, {k: v * 1.5 for k, v in row.items()}, {"patient_id": "p-17", **row}]  # an extra column
    client = _generated(client_package, "client").Client(base_url=endpoint, raise_on_unexpected_status=True)

    def call() -> tuple[Any, Any, Any, Any, Any]:
        with client:
            one = predict.sync(client=client, body=models.Row.from_dict(row))
            many = predict.sync(client=client, body=[models.Row.from_dict(r) for r in rows])
            first = one.predictions[0]
            joined = feedback.sync(
                client=client,
                body=models.FeedbackRequest(prediction_id=first.prediction_id, actual=first.prediction),
            )
            figures = performance.sync(client=client)
            refused = predict.sync(client=client, body=models.Row.from_dict({"patient_id": "p-17"}))
        return one, many, joined, figures, refused

    one, many, joined, figures, refused = await asyncio.to_thread(call)
    with PredictionClient(endpoint) as reference:
        expected = await asyncio.to_thread(reference.predict, rows)

    assert isinstance(one, models.PredictionResponse) and one.pipeline == served.pipeline
    assert len(one.predictions) == 1 and one.predictions[0].prediction == expected.predictions[0].prediction
    assert isinstance(many, models.PredictionResponse)
    assert [p.prediction for p in many.predictions] == [p.prediction for p in expected.predictions]
    assert many.predictions[2].prediction == many.predictions[0].prediction  # the extra column is ignored
    assert isinstance(joined, models.FeedbackResult)
    assert (joined.prediction_id, joined.correct) == (one.predictions[0].prediction_id, True)
    assert isinstance(figures, models.EndpointPerformance) and figures.pipeline == served.pipeline
    assert isinstance(refused, models.InvalidArgument) and "missing features" in str(refused.to_dict())
