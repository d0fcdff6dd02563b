"""The serving baseline: the same fitted pipeline behind a bare Starlette route, nothing else.

Run as ``uvicorn tests.bench.bare_server:app`` with ``BENCH_MODEL_PATH`` naming the skops file
the deploy service serves. It answers what Conveyor's endpoint answers (the label and the class
probabilities of the posted row), computed the plain way (one ``predict_proba``, the label its
arg-max, which is how these classifiers' ``predict`` is defined), without a proxy, BentoML,
request models or capture.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.model_format import load_model

MODEL = load_model(Path(os.environ["BENCH_MODEL_PATH"]).read_bytes())
FEATURES = list(MODEL.feature_names_in_)
CLASSES = [str(c) for c in MODEL.classes_]


async def predict(request: Request) -> Response:
    """One row in, its label and class probabilities out."""
    row = json.loads(await request.body())
    frame = pd.DataFrame([row], columns=FEATURES)
    probabilities = MODEL.predict_proba(frame)[0]
    label = MODEL.classes_[int(probabilities.argmax())].item()
    by_class = dict(zip(CLASSES, probabilities.tolist(), strict=True))
    body = json.dumps({"prediction": label, "probabilities": by_class})
    return Response(body, media_type="application/json")


async def ready(_: Request) -> Response:
    """The model is loaded."""
    return Response("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ready", ready)])
