"""Builders for the deploy tests: a real fitted model with its lineage, profile and spec in MinIO,
and the approval that names them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pandas as pd
from aiokafka import AIOKafkaProducer
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from shared.approvals import ApprovalSigner
from shared.events import (
    ArtifactRef,
    DeploymentTarget,
    Event,
    ModelApproved,
)
from shared.lineage import LineageRecord
from shared.messaging.publisher import encode
from shared.model_format import dump_model
from shared.pipeline_spec import PipelineSpec
from shared.profile import profile_frame
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation

TARGET = "target"


@dataclass(frozen=True)
class Dataset:
    """The breast-cancer data split for training and testing."""

    train: pd.DataFrame
    test: pd.DataFrame
    features: list[str]

    def rows(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Feature rows as an endpoint takes them."""
        return [
            {k: float(v) for k, v in row.items()} for row in frame[self.features].to_dict(orient="records")
        ]


@cache
def dataset() -> Dataset:
    """scikit-learn's breast-cancer data, split once."""
    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=0.25, random_state=7, stratify=frame[TARGET])
    features = [str(c) for c in frame.columns if c != TARGET]
    return Dataset(train=train.reset_index(drop=True), test=test.reset_index(drop=True), features=features)


def fit_model(data: Dataset, *, c: float = 1.0) -> Pipeline:
    """A ColumnTransformer + LogisticRegression pipeline fitted on the train split."""
    model = Pipeline(
        [
            ("preprocess", ColumnTransformer([("numeric", StandardScaler(), data.features)])),
            ("estimator", LogisticRegression(C=c, max_iter=2000)),
        ]
    )
    return model.fit(data.train[data.features], data.train[TARGET])


DRIFT_WINDOW = 200
DRIFT_THRESHOLD = 0.5


def pipeline_spec(name: str, *, cooldown_s: int = 3600) -> PipelineSpec:
    """A classification spec whose drift window is small enough for a test.

    With 30 features, windows of 200 rows drawn from the training data stay below PSI 0.25 and
    those from the test split below 0.35 (sampling noise); data scaled by 3 is above 1 on every
    feature. The threshold sits between, so only shifted data counts as drift.
    """
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": TARGET,
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression"},
            "deployment": {
                "drift_window": DRIFT_WINDOW,
                "drift_psi_threshold": DRIFT_THRESHOLD,
                "retrain_cooldown_seconds": cooldown_s,
            },
        }
    )


@dataclass(frozen=True)
class Published:
    """What an approval names, stored in MinIO."""

    spec: PipelineSpec
    lineage_uri: str
    model: ArtifactRef
    # The registry's key pair in the bucket (created as the registry's first start would).
    signer: ApprovalSigner


def store_training_outputs(
    store: ArtifactStore,
    *,
    bucket: str,
    spec: PipelineSpec,
    data: Dataset,
    artifact: bytes,
    version: int,
    categorical: list[str] | None = None,
) -> Published:
    """Store the spec, the dataset splits and profile, the model bytes and the lineage record.

    ``data.features`` are numeric unless named in ``categorical``.
    """
    categorical = categorical or []
    numeric = [name for name in data.features if name not in categorical]
    SpecStore(store, bucket=bucket).apply(spec)
    prefix = f"test/{spec.name}"
    splits = {
        name: store.put_content_addressed(
            _parquet(frame), bucket=bucket, prefix=f"{prefix}/{name}", suffix=".parquet"
        )
        for name, frame in (
            ("raw", pd.concat([data.train, data.test])),
            ("train", data.train),
            ("test", data.test),
        )
    }
    profile = profile_frame(data.train, numeric=numeric, categorical=categorical)
    splits["profile"] = store.put_content_addressed(
        profile.to_json(), bucket=bucket, prefix=f"{prefix}/profile"
    )
    model = store.put(ObjectLocation(bucket, f"{prefix}/models/v{version}/model.skops"), artifact)
    lineage = _lineage(spec, splits=splits, numeric=numeric, categorical=categorical, version=version)
    lineage_ref = store.put(ObjectLocation(bucket, f"{prefix}/models/v{version}/lineage.json"), lineage)
    signer = ApprovalSigner(store, bucket=bucket)
    signer.load()
    return Published(spec=spec, lineage_uri=lineage_ref.uri, model=model, signer=signer)


def approval(published: Published, *, version: int, model: ArtifactRef | None = None) -> ModelApproved:
    """The ModelApproved the registry would publish for ``published``, signed as the registry signs."""
    event = ModelApproved.first(
        producer="registry",
        pipeline=published.spec.name,
        version=version,
        run_id=f"run-test-{version}",
        model=model or published.model,
        metrics={"f1_macro": 0.95},
        lineage=_summary(published, version=version),
        deployment=DeploymentTarget(realtime=True, batch=True),
        approved_by="test",
    )
    return published.signer.sign(event)


def _summary(published: Published, *, version: int) -> Any:
    from shared.events import LineageSummary

    return LineageSummary(
        run_id=f"run-test-{version}",
        dataset_version="0" * 64,
        spec_version=published.spec.version,
        code_version="test",
        framework_version="1.9.1",
        lineage_uri=published.lineage_uri,
    )


def _lineage(
    spec: PipelineSpec,
    *,
    splits: dict[str, ArtifactRef],
    numeric: list[str],
    categorical: list[str],
    version: int,
) -> bytes:
    now = datetime.now(UTC)
    record = LineageRecord(
        run_id=f"run-test-{version}",
        pipeline=spec.name,
        dataset_version="0" * 64,
        dataset=splits,
        spec_version=spec.version,
        spec_uri=f"s3://unused/specs/{spec.name}/{spec.version}.yaml",
        code_version="test",
        estimator=spec.estimator.path,
        search_kind="grid",
        search_space={},
        hyperparameters={},
        cv_metric="f1_macro",
        cv_scores=[0.95],
        cv_score=0.95,
        seed=spec.seed,
        features={"numeric": numeric, "categorical": categorical},
        environment={"libraries": {"scikit-learn": "1.9.1"}},
        started_at=now,
        finished_at=now,
        training_seconds=0.1,
    )
    return record.model_dump_json().encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def model_artifact(model: Pipeline) -> bytes:
    """The skops bytes the train service would write."""
    return dump_model(model)


async def publish(producer: AIOKafkaProducer, event: Event) -> None:
    """Publish an event as the platform does: JSON, keyed by pipeline."""
    await producer.send_and_wait(event.topic, encode(event), key=event.key)
