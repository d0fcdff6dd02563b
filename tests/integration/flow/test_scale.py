"""Arrivals of data-scale size: a million rows through ingest, train and evaluate; a file over
ingest's memory setting refused with the reason, by a service that stays up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.ingest.ingestion import row_group_rows
from shared.clients.events import EventWatcher, publish_data_arrival
from shared.events import DatasetRejected, DatasetValidated, ModelEvaluated, ModelTrained
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, minio_client
from tests.integration.processes import ServiceProcess
from tests.synthetic import synthetic_csv, synthetic_spec

pytestmark = pytest.mark.infra

MILLION = 1_000_000


async def test_a_million_row_arrival_becomes_an_evaluated_candidate(
    flow_settings: Settings,
    services: dict[str, ServiceProcess],
    watcher: EventWatcher,
    specs: SpecStore,
    tmp_path: Path,
) -> None:
    # Two folds and mean imputation: the test is that the size flows through, the bench times it.
    spec = synthetic_spec(
        f"million-{uuid.uuid4().hex[:8]}", folds=2, preprocessing={"numeric": {"imputer": "mean"}}
    )
    specs.apply(spec)
    data = tmp_path / "million.csv"
    data.write_bytes(synthetic_csv(MILLION, seed=7))
    arrival = await publish_data_arrival(flow_settings, pipeline=spec.name, data=data)

    evaluated = await watcher.wait_for(
        ModelEvaluated, DatasetRejected, correlation_id=arrival.correlation_id, timeout=600
    )
    assert isinstance(evaluated, ModelEvaluated), evaluated
    validated = watcher.events(DatasetValidated, correlation_id=arrival.correlation_id)[0]
    trained = watcher.events(ModelTrained, correlation_id=arrival.correlation_id)[0]
    assert validated.rows == MILLION
    assert validated.train.size_bytes > 0 and validated.test.size_bytes > 0
    assert validated.raw.size_bytes == data.stat().st_size
    store = ArtifactStore.from_settings(flow_settings)
    train = pq.ParquetFile(store.open(store.locate(validated.train.uri))).metadata  # its footer only
    groups = [train.row_group(i).num_rows for i in range(train.num_row_groups)]
    assert sum(groups) == train.num_rows and max(groups) == row_group_rows(train.num_rows) == 65_536
    assert trained.cv_score > 0.6  # the target is drawn from the features: a fit finds it
    assert evaluated.metrics["accuracy"] > 0.6
    assert all(process.process and process.process.poll() is None for process in services.values())


@pytest.fixture
def small_ingest(
    flow_settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[ServiceProcess, Settings]]:
    """An ingest of its own (group, artifacts bucket) allowed 16 MiB: the session's stays as it is."""
    tag = uuid.uuid4().hex[:8]
    settings = flow_settings.model_copy(
        update={"artifacts_bucket": f"test-small-{tag}", "consumer_group_prefix": f"small-{tag}"}
    )
    ArtifactStore.from_settings(settings).ensure_buckets()
    env = {
        **service_env,
        "CONVEYOR_INGEST_MAX_MEMORY_MB": "16",
        "CONVEYOR_ARTIFACTS_BUCKET": settings.artifacts_bucket,
        "CONVEYOR_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
    }
    process = ServiceProcess("ingest", env=env, log_dir=tmp_path)
    process.start()
    try:
        yield process, settings
    finally:
        process.stop()
        client = minio_client(settings)
        for obj in client.list_objects(settings.artifacts_bucket, recursive=True):
            if obj.object_name is not None:
                client.remove_object(settings.artifacts_bucket, obj.object_name)
        client.remove_bucket(settings.artifacts_bucket)


async def test_a_file_over_the_memory_setting_is_rejected_with_the_reason(
    small_ingest: tuple[ServiceProcess, Settings], watcher: EventWatcher, tmp_path: Path
) -> None:
    process, settings = small_ingest
    store = ArtifactStore.from_settings(settings)
    spec = synthetic_spec(f"too-big-{uuid.uuid4().hex[:8]}")
    SpecStore(store, bucket=settings.artifacts_bucket).apply(spec)
    data = tmp_path / "large.csv"
    data.write_bytes(synthetic_csv(100_000, seed=3))  # about 12 MiB: 36 MiB to validate
    arrival = await publish_data_arrival(settings, pipeline=spec.name, data=data)

    rejected = await _rejection(watcher, arrival.correlation_id, rule="source.size")
    assert "CONVEYOR_INGEST_MAX_MEMORY_MB" in rejected.failures[0].message
    assert "16 MiB" in rejected.failures[0].message
    assert process.process is not None and process.process.poll() is None  # refused, not killed
    # The arrival is still there, byte for byte; nothing of it was stored as a dataset.
    landing = store.locate(arrival.uri, allowed=None)
    assert store.read(landing) == data.read_bytes()
    assert store.list_keys(bucket=settings.artifacts_bucket, prefix=f"datasets/{spec.name}/") == []


async def _rejection(watcher: EventWatcher, correlation_id: uuid.UUID, *, rule: str) -> DatasetRejected:
    """The DatasetRejected of ``rule`` (the session's ingest, which lacks the spec, rejects too)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in watcher.events(DatasetRejected, correlation_id=correlation_id):
            if any(failure.rule == rule for failure in event.failures):
                return event
        await asyncio.sleep(0.1)
    raise AssertionError(f"no DatasetRejected for {rule} within 120 s")
