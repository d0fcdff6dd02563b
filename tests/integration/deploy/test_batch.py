"""Batch jobs against the real MinIO (and, through the deploy service, the real Kafka).

Files are read in ranges and scored chunk by chunk; the output must equal scoring the whole file
at once, a redelivered request must keep the first output, and a file that cannot be scored must
end in a BatchPredictionFailed that says why.
"""

from __future__ import annotations

import asyncio
import io
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from minio import Minio
from minio.error import S3Error
from sklearn.pipeline import Pipeline

from services.deploy.batch import score_file
from services.deploy.serving.predict import ModelCard
from shared.events import (
    BatchPredictionCompleted,
    BatchPredictionFailed,
    BatchPredictionRequested,
    DeploymentTarget,
)
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation
from tests.integration.deploy.conftest import DeployStack
from tests.integration.deploy.fixtures import (
    TARGET,
    Dataset,
    approval,
    dataset,
    fit_model,
    model_artifact,
    pipeline_spec,
    publish,
    store_training_outputs,
)

pytestmark = pytest.mark.infra


def _card(model: Pipeline, data: Dataset) -> ModelCard:
    return ModelCard(
        pipeline="bc",
        version=1,
        task="classification",
        numeric=tuple(data.features),
        classes=tuple(model.classes_.tolist()),
        sha256="0" * 64,
    )


def _input(data: Dataset, *, copies: int = 6) -> pd.DataFrame:
    """The test split a few times over, with a key column that is not a feature."""
    frame = pd.concat([data.test] * copies, ignore_index=True)
    frame.insert(0, "patient_id", [f"p-{i}" for i in range(len(frame))])
    return frame


def _parquet(frame: pd.DataFrame, *, row_group_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=row_group_size)
    return buffer.getvalue()


def _expected(model: Pipeline, frame: pd.DataFrame, data: Dataset) -> pd.DataFrame:
    probabilities = model.predict_proba(frame[data.features])
    return pd.DataFrame(
        {
            "row": np.arange(len(frame)),
            "patient_id": frame["patient_id"],
            TARGET: frame[TARGET],
            "prediction": model.predict(frame[data.features]),
            "probability_0": probabilities[:, 0],
            "probability_1": probabilities[:, 1],
        }
    )


def test_a_parquet_of_many_row_groups_is_read_in_ranges_and_scored_like_the_whole(
    store: ArtifactStore, bucket: str
) -> None:
    data = dataset()
    model = fit_model(data)
    frame = _input(data)
    source = ObjectLocation(bucket, "in/many-groups.parquet")
    store.put(source, _parquet(frame, row_group_size=100))
    output = ObjectLocation(bucket, "out/predictions.parquet")
    scored = score_file(store, source=source, model=model, card=_card(model, data), output=output)
    written = pd.read_parquet(io.BytesIO(store.read(output)))
    assert scored.rows == len(frame) and scored.uri == output.uri
    pd.testing.assert_frame_equal(written, _expected(model, frame, data), check_dtype=False)


def test_a_second_output_for_the_same_request_keeps_the_first(
    store: ArtifactStore, bucket: str, minio: Minio
) -> None:
    data = dataset()
    model = fit_model(data)
    first, other = ObjectLocation(bucket, "in/first.csv"), ObjectLocation(bucket, "in/other.csv")
    store.put(first, _input(data, copies=1).to_csv(index=False).encode())
    store.put(other, _input(data, copies=2).to_csv(index=False).encode())
    output = ObjectLocation(bucket, "out/request-1.parquet")
    score_file(store, source=first, model=model, card=_card(model, data), output=output)
    before = minio.stat_object(bucket, output.key)
    score_file(store, source=other, model=model, card=_card(model, data), output=output)
    after = minio.stat_object(bucket, output.key)
    assert after.etag == before.etag
    assert len(pd.read_parquet(io.BytesIO(store.read(output)))) == len(data.test)


def test_an_object_replaced_while_it_is_read_fails_the_read(store: ArtifactStore, bucket: str) -> None:
    location = ObjectLocation(bucket, "in/moving.csv")
    store.replace(location, b"a,b\n1,2\n")
    reader = store.open(location)
    assert reader.read(4) == b"a,b\n"
    store.replace(location, b"a,b\n3,4\n")
    with pytest.raises(S3Error, match="PreconditionFailed"):
        reader.read()
    with pytest.raises(ObjectNotFoundError):
        store.open(ObjectLocation(bucket, "in/none.parquet"))


async def test_the_service_scores_files_and_says_why_it_cannot(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, store, settings = dataset(), deploy_stack.store, deploy_stack.settings
    name = f"bc-batch-{uuid.uuid4().hex[:8]}"
    model = fit_model(data)
    published = store_training_outputs(
        store,
        bucket=settings.artifacts_bucket,
        spec=pipeline_spec(name),
        data=data,
        artifact=model_artifact(model),
        version=1,
    )
    batch_only = approval(published, version=1).model_copy(
        update={"deployment": DeploymentTarget(realtime=False, batch=True)}
    )
    await publish(kafka_producer, batch_only)
    await _until_known(settings.deploy_base_url, name)

    frame = _input(data)
    not_a_number = frame.astype({"mean area": object})
    not_a_number.loc[5, "mean area"] = "large"
    inputs = {
        "good.parquet": _parquet(frame, row_group_size=100),
        "not-a-number.csv": not_a_number.to_csv(index=False).encode(),
        "no-radius.parquet": _parquet(frame.drop(columns=["mean radius"])),
        "rows.json": b"[]",
        "not-parquet.parquet": b"patient_id,mean radius\n",
    }
    for key, body in inputs.items():
        store.put(ObjectLocation(settings.landing_bucket, f"{name}/{key}"), body)
    uris = {key: f"s3://{settings.landing_bucket}/{name}/{key}" for key in [*inputs, "missing.csv"]}
    requests = {
        key: BatchPredictionRequested.first(producer="test", pipeline=name, input_uri=uri)
        for key, uri in uris.items()
    }
    for request in [*requests.values(), requests["good.parquet"]]:  # the good one twice: a redelivery
        await publish(kafka_producer, request)

    done = await deploy_stack.collector.wait_until(
        BatchPredictionCompleted, pipeline=name, count=2, timeout=90
    )
    failed = await deploy_stack.collector.wait_until(
        BatchPredictionFailed, pipeline=name, count=len(requests) - 1, timeout=90
    )
    assert {event.causation_id for event in done} == {requests["good.parquet"].event_id}
    assert done[0].output_uri == done[1].output_uri and done[0].rows == len(frame)
    written = pd.read_parquet(io.BytesIO(store.read(store.locate(done[0].output_uri))))
    pd.testing.assert_frame_equal(written, _expected(model, frame, data), check_dtype=False)
    reasons = {event.causation_id: event.reason for event in failed}
    for key, words in {
        "not-a-number.csv": "FeatureError: feature 'mean area' must be a number",
        "no-radius.parquet": "FeatureError: input lacks the model's features ['mean radius']",
        "rows.json": "BatchRefused",
        "not-parquet.parquet": "ArrowInvalid",
        "missing.csv": "ObjectNotFoundError",
    }.items():
        assert words in reasons[requests[key].event_id], reasons[requests[key].event_id]


async def _until_known(deploy_url: str, pipeline: str, *, timeout_s: float = 90.0) -> None:
    """Poll the deploy service until it knows the pipeline's version 1."""
    async with httpx.AsyncClient(base_url=deploy_url, timeout=2.0) as client:
        for _ in range(int(timeout_s / 0.1)):
            answer = await client.get(f"/v1/deployments/{pipeline}")
            if answer.is_success and 1 in answer.json()["versions"]:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{pipeline} v1 never became known to the deploy service")
