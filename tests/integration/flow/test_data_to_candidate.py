"""DataArrived → ModelEvaluated through the ingest, train and evaluate processes on real Kafka and MinIO."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from sklearn.datasets import load_breast_cancer, load_diabetes

from shared.clients.events import EventWatcher, approved_models, publish_data_arrival
from shared.events import (
    DatasetRejected,
    DatasetValidated,
    ModelApproved,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
    TrainingFailed,
)
from shared.messaging.publisher import encode
from shared.pipeline_spec import PipelineSpec
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from tests.integration.kafka_tools import wait_for
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.infra


def new_pipeline(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def breast_cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def apply(specs: SpecStore, **fields: object) -> PipelineSpec:
    spec = PipelineSpec.from_mapping({"approval": "auto", **fields})
    specs.apply(spec)
    return spec


async def test_breast_cancer_arrival_becomes_an_evaluated_candidate(
    flow_settings: Settings,
    services: dict[str, ServiceProcess],
    watcher: EventWatcher,
    specs: SpecStore,
    artifacts: ArtifactStore,
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("bc"),
        target="target",
        task="classification",
        estimator={
            "path": "sklearn.linear_model.LogisticRegression",
            "search": {"space": {"C": [0.1, 1.0]}, "folds": 3},
        },
        gates=[{"metric": "accuracy", "min": 0.9}],
    )
    arrival = await publish_data_arrival(
        flow_settings, pipeline=spec.name, data=csv_bytes(breast_cancer()), filename="breast_cancer.csv"
    )
    evaluated = await watcher.wait_for(ModelEvaluated, correlation_id=arrival.correlation_id)
    assert isinstance(evaluated, ModelEvaluated)
    assert evaluated.passed, evaluated.gates
    assert evaluated.metrics["accuracy"] > 0.9
    assert {"precision_macro", "recall_macro", "f1_macro", "roc_auc", "log_loss"} <= set(evaluated.metrics)
    assert evaluated.champion is None  # the first model of this pipeline
    assert evaluated.report is not None

    validated = watcher.events(DatasetValidated, correlation_id=arrival.correlation_id)[0]
    trained = watcher.events(ModelTrained, correlation_id=arrival.correlation_id)[0]
    assert validated.rows == 569 and validated.spec_version == spec.version
    assert trained.hyperparameters["C"] in (0.1, 1.0)
    assert trained.causation_id == validated.event_id and evaluated.causation_id == trained.event_id

    lineage = artifacts.get(trained.lineage)
    assert b'"dataset_version"' in lineage and validated.dataset_version.encode() in lineage
    assert b"scikit-learn==" in lineage  # the full package list


async def test_diabetes_regression_arrival_is_evaluated_with_regression_metrics(
    flow_settings: Settings, services: dict[str, ServiceProcess], watcher: EventWatcher, specs: SpecStore
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("diab"),
        target="target",
        task="regression",
        estimator={
            "path": "sklearn.linear_model.Ridge",
            "search": {"space": {"alpha": [0.1, 1.0]}, "folds": 3},
        },
        gates=[{"metric": "r2", "min": 0.2}],
    )
    frame = load_diabetes(as_frame=True).frame
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    arrival = await publish_data_arrival(
        flow_settings, pipeline=spec.name, data=buffer.getvalue(), filename="diabetes.parquet"
    )
    evaluated = await watcher.wait_for(ModelEvaluated, correlation_id=arrival.correlation_id)
    assert isinstance(evaluated, ModelEvaluated)
    assert {"rmse", "mae", "r2"} <= set(evaluated.metrics)
    assert evaluated.metrics["r2"] > 0.2 and evaluated.passed


@pytest.mark.parametrize(
    ("name", "data", "rule"),
    [
        ("no-target.csv", csv_bytes(breast_cancer().drop(columns=["target"])), "schema.required_columns"),
        (
            "text-column.csv",
            csv_bytes(breast_cancer().assign(**{"mean radius": "not a number"})),
            "schema.feature_type",
        ),
        ("empty.csv", b"", "read.parse"),
    ],
)
async def test_bad_files_are_rejected_with_the_failed_rule(
    flow_settings: Settings,
    services: dict[str, ServiceProcess],
    watcher: EventWatcher,
    specs: SpecStore,
    name: str,
    data: bytes,
    rule: str,
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("bad"),
        target="target",
        task="classification",
        features={"numeric": ["mean radius", "mean texture"]},
    )
    arrival = await publish_data_arrival(flow_settings, pipeline=spec.name, data=data, filename=name)
    outcome = await watcher.wait_for(DatasetValidated, DatasetRejected, correlation_id=arrival.correlation_id)
    assert isinstance(outcome, DatasetRejected), outcome
    assert rule in [failure.rule for failure in outcome.failures], outcome.failures
    assert all(not failure.passed for failure in outcome.failures)


async def test_unknown_pipeline_and_unsafe_uri_are_rejected(
    flow_settings: Settings, services: dict[str, ServiceProcess], watcher: EventWatcher
) -> None:
    arrival = await publish_data_arrival(
        flow_settings, pipeline=new_pipeline("nospec"), data=b"a,b\n1,2\n", filename="x.csv"
    )
    outcome = await watcher.wait_for(DatasetRejected, correlation_id=arrival.correlation_id)
    assert isinstance(outcome, DatasetRejected) and outcome.failures[0].rule == "pipeline.known"


async def test_the_same_file_twice_is_one_dataset_version(
    flow_settings: Settings,
    services: dict[str, ServiceProcess],
    watcher: EventWatcher,
    specs: SpecStore,
    artifacts: ArtifactStore,
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("twice"),
        target="target",
        task="classification",
        estimator={"path": "sklearn.linear_model.LogisticRegression"},
    )
    data = csv_bytes(breast_cancer())
    first = await publish_data_arrival(flow_settings, pipeline=spec.name, data=data, filename="a.csv")
    one = await watcher.wait_for(DatasetValidated, correlation_id=first.correlation_id)
    second = await publish_data_arrival(flow_settings, pipeline=spec.name, data=data, filename="b.csv")
    two = await watcher.wait_for(DatasetValidated, correlation_id=second.correlation_id)
    assert isinstance(one, DatasetValidated) and isinstance(two, DatasetValidated)
    assert one.dataset_version == two.dataset_version
    assert (one.raw, one.train, one.test, one.profile) == (two.raw, two.train, two.test, two.profile)
    keys = artifacts.list_keys(bucket=flow_settings.artifacts_bucket, prefix=f"datasets/{spec.name}/")
    assert len([k for k in keys if "/raw/" in k]) == 1
    assert len({k.split("/")[2] for k in keys if "/raw/" in k}) == 1  # one dataset version

    # The second arrival trains nothing new: the run id is the same, the finished run is found.
    trained = [
        await watcher.wait_for(ModelTrained, correlation_id=arrival.correlation_id)
        for arrival in (first, second)
    ]
    assert trained[0].run_id == trained[1].run_id  # type: ignore[attr-defined]
    assert trained[0].model == trained[1].model  # type: ignore[attr-defined]


async def test_train_killed_while_fitting_yields_one_model_and_one_model_trained(
    flow_settings: Settings,
    services: dict[str, ServiceProcess],
    watcher: EventWatcher,
    specs: SpecStore,
    artifacts: ArtifactStore,
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("killed"),
        target="target",
        task="classification",
        estimator={
            "path": "sklearn.ensemble.RandomForestClassifier",
            "search": {"space": {"n_estimators": [150, 200, 250]}, "folds": 3},
        },
    )
    train = services["train"]
    arrival = await publish_data_arrival(
        flow_settings, pipeline=spec.name, data=csv_bytes(breast_cancer()), filename="bc.csv"
    )
    validated = await watcher.wait_for(DatasetValidated, correlation_id=arrival.correlation_id)
    train.wait_for_log(f"fitting {spec.name}", timeout=60)
    train.kill()
    assert watcher.events(ModelTrained, correlation_id=arrival.correlation_id) == []
    train.start()

    trained = await watcher.wait_for(
        ModelTrained, TrainingFailed, correlation_id=arrival.correlation_id, timeout=180
    )
    assert isinstance(trained, ModelTrained)
    await watcher.wait_for(ModelEvaluated, correlation_id=arrival.correlation_id)
    assert len(watcher.events(ModelTrained, correlation_id=arrival.correlation_id)) == 1
    assert isinstance(validated, DatasetValidated)
    run_keys = artifacts.list_keys(bucket=flow_settings.artifacts_bucket, prefix=f"runs/{spec.name}/")
    assert len([k for k in run_keys if k.endswith(".skops")]) == 1, run_keys


async def test_one_data_arrival_is_one_trace_across_the_services(
    flow_settings: Settings, services: dict[str, ServiceProcess], watcher: EventWatcher, specs: SpecStore
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("trace"),
        target="target",
        task="classification",
        estimator={"path": "sklearn.linear_model.LogisticRegression"},
    )
    arrival = await publish_data_arrival(
        flow_settings, pipeline=spec.name, data=csv_bytes(breast_cancer()), filename="bc.csv"
    )
    await watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id)
    trace_file = flow_settings.trace_file
    assert trace_file is not None

    def services_in_trace() -> set[str]:
        spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
        mine = [
            s for s in spans if s["attributes"].get("conveyor.correlation_id") == str(arrival.correlation_id)
        ]
        if not mine:
            return set()
        trace_id = mine[0]["trace_id"]
        return {s["service"] for s in spans if s["trace_id"] == trace_id}

    expected = {f"conveyor-{name}" for name in ("sdk", "ingest", "train", "evaluate", "registry")}
    # Spans are exported in batches every few seconds.
    await wait_for(lambda: expected <= services_in_trace(), timeout=30, what=f"spans of {sorted(expected)}")


async def test_approved_models_can_be_followed_from_the_sdk(
    flow_settings: Settings, services: dict[str, ServiceProcess], specs: SpecStore, producer: AIOKafkaProducer
) -> None:
    spec = apply(
        specs,
        name=new_pipeline("follow"),
        target="target",
        task="classification",
        estimator={"path": "sklearn.linear_model.LogisticRegression"},
    )
    arrival = await publish_data_arrival(
        flow_settings, pipeline=spec.name, data=csv_bytes(breast_cancer()), filename="bc.csv"
    )

    async def approvals(count: int) -> list[ModelApproved]:
        found: list[ModelApproved] = []
        async for approved in approved_models(flow_settings, pipeline=spec.name, from_beginning=True):
            found.append(approved)
            if len(found) == count:
                return found
        raise AssertionError("the stream ended")

    [approved] = await asyncio.wait_for(approvals(1), timeout=120)
    assert approved.correlation_id == arrival.correlation_id
    assert approved.version == 1 and approved.lineage.spec_version == spec.version

    # Behind it on the pipeline's partition: a record that is no approval, an unsigned approval and
    # the genuine signature moved onto another version, then the genuine approval delivered again.
    # A follower gets the genuine approval twice and nothing else.
    forged = {**approved.model_dump(mode="json"), "event_id": str(uuid.uuid4())}
    for value in (
        b"{not json",
        json.dumps({**forged, "signature": None}).encode(),
        json.dumps({**forged, "version": 2}).encode(),
        encode(approved),
    ):
        await producer.send_and_wait(approved.topic, value, key=approved.key)
    followed = await asyncio.wait_for(approvals(2), timeout=60)
    assert [a.event_id for a in followed] == [approved.event_id] * 2
