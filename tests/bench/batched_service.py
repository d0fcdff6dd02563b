"""For the throughput benchmark only: Conveyor's prediction code behind a batchable BentoML API.

Run as ``bentoml serve tests.bench.batched_service:BatchedPrediction --arg model_tag=<tag>`` with
the deploy service's BentoML home. Requests are ``{"rows": [row]}``; BentoML's adaptive batching
merges concurrent requests into one call of the same ``answer`` the real endpoint runs (without
prediction capture). It is not how Conveyor serves: the deploy service leaves batching off.
"""

from __future__ import annotations

from typing import Any

import bentoml
from pydantic import BaseModel

from services.deploy.serving.endpoint import LoadedModel, answer
from shared.clients.serving import FeatureValue


class BatchedArgs(BaseModel):
    """Which model to serve."""

    model_tag: str = ""


args = bentoml.use_arguments(BatchedArgs)


@bentoml.service(
    name="bench_batched_prediction",
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class BatchedPrediction:
    """One model version, predictions batched across concurrent requests."""

    def __init__(self) -> None:
        self.loaded = LoadedModel.from_store(args.model_tag)

    # A latency budget far above what the benchmark reaches: batching must not shed requests here.
    @bentoml.api(route="/v1/predict", batchable=True, max_batch_size=64, max_latency_ms=30_000)
    async def predict(self, rows: list[dict[str, FeatureValue]]) -> list[dict[str, Any]]:
        """Predict every row of the merged batch."""
        return [p.model_dump() for p in answer(self.loaded, rows).predictions]
