"""The prediction client: rows in, typed responses out, refusals as PredictionError."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.clients.serving import PredictionClient, PredictionError

ANSWER = {
    "pipeline": "churn",
    "version": 2,
    "predictions": [{"prediction_id": "p1", "prediction": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}],
}


def _client(handler: httpx.MockTransport) -> PredictionClient:
    return PredictionClient(
        "http://endpoint", client=httpx.Client(base_url="http://endpoint", transport=handler)
    )


def test_predict_sends_the_rows_and_parses_the_answer() -> None:
    sent: list[object] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.url.path == "/v1/predict" and request.headers["content-type"] == "application/json"
        return httpx.Response(200, json=ANSWER)

    with _client(httpx.MockTransport(handle)) as client:
        one = client.predict({"age": 1})
        client.predict([{"age": 1}, {"age": 2}])
    assert sent == [{"age": 1}, [{"age": 1}, {"age": 2}]]
    assert one.version == 2 and one.predictions[0].probabilities == {"no": 0.2, "yes": 0.8}


def test_refusals_raise_with_the_status_and_reason() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=[{"error": "row 0: unknown features ['x']"}])

    with _client(httpx.MockTransport(handle)) as client, pytest.raises(PredictionError) as refused:
        client.predict({"x": 1})
    assert refused.value.status_code == 400 and "unknown features" in str(refused.value)


def test_feedback_and_readiness() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(503)
        body = json.loads(request.content)
        return httpx.Response(200, json={**body, "version": 2, "prediction": "yes", "correct": True})

    with _client(httpx.MockTransport(handle)) as client:
        assert client.feedback("p1", "yes").correct is True
        assert client.ready() is False
