"""Batch jobs on a real Spark standalone cluster (a master and two workers), against the real MinIO.

The cluster comes from the pyspark wheel (``infra.spark``), on ports from ``CONVEYOR_SPARK_*``, and
is stopped by process id at the end if this module started it. The deploy service's batch jobs are
driven directly (``BatchJobs.run``: an event in, an event out), the driver with 512 MB.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra import process
from infra.spark import alive_workers, master_server, start_spark, stop_spark
from services.deploy.artifacts import import_approved
from services.deploy.batch import OUTPUT_PREFIX, BatchJobs
from services.deploy.batch_spark import SparkEngine
from services.deploy.batch_spark_parts import S3Access
from services.deploy.batch_spark_settings import SparkSettings
from services.deploy.records import ApprovedVersion, DeploymentRecord
from shared.events import BatchPredictionCompleted, BatchPredictionFailed, BatchPredictionRequested, Event
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, minio_client
from shared.uris import ObjectLocation
from tests.integration.deploy.fixtures import (
    TARGET,
    approval,
    dataset,
    fit_model,
    model_artifact,
    pipeline_spec,
    store_training_outputs,
)
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

WORKERS = 2
DRIVER_MEMORY = "512m"
PIPELINE = "spark-bc"


@dataclass
class SparkJobs:
    """Batch jobs able to run on the cluster, the store they read and write, and the version they score."""

    jobs: BatchJobs
    engine: SparkEngine
    access: S3Access
    store: ArtifactStore
    bucket: str
    version: ApprovedVersion
    lookup: Callable[[str], DeploymentRecord | None]


@pytest.fixture(scope="module")
def spark_cluster(settings: Settings) -> Iterator[SparkSettings]:
    """The master and two workers, small memory on 2 cores; stopped by pid if started here."""
    spark = SparkSettings(workers=WORKERS, worker_memory="768m", driver_memory=DRIVER_MEMORY, part_rows=2_000)
    started_here = process.running_pid(master_server(settings, spark)) is None
    start_spark(settings, spark, timeout=180)
    assert process.wait_until(lambda: alive_workers(settings, spark) >= WORKERS, timeout=60)
    yield spark
    if started_here:
        stop_spark(settings, spark)


@pytest.fixture(scope="module")
def spark_jobs(
    settings: Settings, spark_cluster: SparkSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkJobs]:
    """A verified version 1 in a BentoML store of this module's own, and the jobs that score with it."""
    # Before BentoML's first use, which fixes its home: the module's models stay in a store of its own.
    os.environ["BENTOML_HOME"] = str(tmp_path_factory.mktemp("bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    client = minio_client(settings)
    bucket = f"spark-{uuid.uuid4().hex[:10]}"
    client.make_bucket(bucket)
    store = ArtifactStore(client, buckets=(bucket,))
    data = dataset()
    published = store_training_outputs(
        store,
        bucket=bucket,
        spec=pipeline_spec(PIPELINE),
        data=data,
        artifact=model_artifact(fit_model(data)),
        version=1,
    )
    version = import_approved(
        approval(published, version=1), store=store, specs=SpecStore(store, bucket=bucket)
    )
    record = DeploymentRecord(pipeline=PIPELINE, port=1, versions={1: version}, order=[1])

    def lookup(name: str) -> DeploymentRecord | None:
        return record if name == PIPELINE else None

    access = S3Access.from_settings(settings)
    engine = SparkEngine(spark=spark_cluster, access=access)
    jobs = BatchJobs(store=store, bucket=bucket, lookup=lookup, spark=engine)
    yield SparkJobs(
        jobs=jobs, engine=engine, access=access, store=store, bucket=bucket, version=version, lookup=lookup
    )
    engine.stop()
    for item in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, str(item.object_name))
    client.remove_bucket(bucket)


def _input(copies: int) -> pd.DataFrame:
    data = dataset()
    frame = pd.concat([data.test] * copies, ignore_index=True)
    frame.insert(0, "patient_id", [f"p-{i}" for i in range(len(frame))])
    return frame


def _put_parquet(jobs: SparkJobs, key: str, frame: pd.DataFrame, *, row_group_size: int) -> str:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=row_group_size)
    jobs.store.put(ObjectLocation(jobs.bucket, key), buffer.getvalue())
    return f"s3://{jobs.bucket}/{key}"


async def _run(jobs: SparkJobs, uri: str, *, engine: str) -> Event:
    request = BatchPredictionRequested.first(
        producer="test",
        pipeline=PIPELINE,
        input_uri=uri,
        engine=engine,
    )
    return await jobs.jobs.run(request)


def _read_output(jobs: SparkJobs, uri: str) -> pd.DataFrame:
    location = jobs.store.locate(uri)
    if location.key.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(jobs.store.read(location)))
    keys = jobs.store.list_keys(bucket=jobs.bucket, prefix=f"{location.key}/")
    parts = sorted(key for key in keys if key.endswith(".parquet"))
    return pd.concat(
        [pd.read_parquet(io.BytesIO(jobs.store.read(ObjectLocation(jobs.bucket, key)))) for key in parts],
        ignore_index=True,
    )


async def test_spark_scores_every_row_as_the_in_process_job_does(spark_jobs: SparkJobs) -> None:
    frame = _input(copies=40)  # 5,720 rows in row groups of 500: three parts of two thousand rows or less
    uri = _put_parquet(spark_jobs, "in/many-groups.parquet", frame, row_group_size=500)
    local = await _run(spark_jobs, uri, engine="local")
    on_spark = await _run(spark_jobs, uri, engine="spark")
    assert isinstance(local, BatchPredictionCompleted), local
    assert isinstance(on_spark, BatchPredictionCompleted), on_spark
    assert on_spark.rows == local.rows == len(frame)
    assert on_spark.output_uri.endswith(f"/{on_spark.causation_id}")
    expected = _read_output(spark_jobs, local.output_uri)
    pd.testing.assert_frame_equal(_read_output(spark_jobs, on_spark.output_uri), expected)
    assert expected[TARGET].tolist() == frame[TARGET].tolist()


async def test_an_input_larger_than_the_drivers_memory_is_scored(spark_jobs: SparkJobs) -> None:
    """About 600 MB of incompressible features; the driver (512 MB) sees only their footer and counts."""
    features = dataset().features
    rows, group = 2_400_000, 300_000
    key = "in/large.parquet"
    schema = pa.schema([("id", pa.int64()), *((name, pa.float64()) for name in features)])
    filesystem = spark_jobs.access.filesystem()
    generator = np.random.default_rng(7)
    with (
        filesystem.open_output_stream(f"{spark_jobs.bucket}/{key}") as sink,
        pq.ParquetWriter(sink, schema, compression="none") as writer,
    ):
        for start in range(0, rows, group):
            values = generator.normal(10.0, 5.0, size=(group, len(features)))
            columns = [pa.array(np.arange(start, start + group)), *(pa.array(v) for v in values.T)]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    size = filesystem.get_file_info(f"{spark_jobs.bucket}/{key}").size
    assert size > 512 * 1024 * 1024, size
    done = await _run(spark_jobs, f"s3://{spark_jobs.bucket}/{key}", engine="spark")
    assert isinstance(done, BatchPredictionCompleted), done
    assert done.rows == rows
    location = spark_jobs.store.locate(done.output_uri)
    parts = sorted(spark_jobs.store.list_keys(bucket=spark_jobs.bucket, prefix=f"{location.key}/"))
    footers = [pq.read_metadata(filesystem.open_input_file(f"{spark_jobs.bucket}/{k}")) for k in parts[1:]]
    assert parts[0].endswith("_manifest.json") and sum(f.num_rows for f in footers) == rows


async def test_an_input_spark_cannot_score_fails_with_the_reason(spark_jobs: SparkJobs) -> None:
    frame = _input(copies=4)
    not_a_number = frame.astype({"mean area": str})  # numbers as text: read by an executor as numbers
    not_a_number.loc[len(frame) - 1, "mean area"] = "large"  # but this one, in the last row group
    uris = {
        "no-radius": _put_parquet(
            spark_jobs, "in/no-radius.parquet", frame.drop(columns=["mean radius"]), row_group_size=500
        ),
        "not-a-number": _put_parquet(spark_jobs, "in/nan.parquet", not_a_number, row_group_size=100),
        "missing": f"s3://{spark_jobs.bucket}/in/missing.parquet",
    }
    expected = {
        "no-radius": "FeatureError: input lacks the model's features ['mean radius']",
        "not-a-number": "FeatureError: feature 'mean area' must be a number",
        "missing": "ObjectNotFoundError",
    }
    for name, uri in uris.items():
        failed = await _run(spark_jobs, uri, engine="spark")
        assert isinstance(failed, BatchPredictionFailed), failed
        assert expected[name] in failed.reason, failed.reason


async def test_a_job_that_fails_part_way_leaves_no_part_behind(spark_jobs: SparkJobs) -> None:
    frame = _input(copies=40)  # three parts; the last row of the last one is no number
    not_a_number = frame.astype({"mean area": str})
    not_a_number.loc[len(frame) - 1, "mean area"] = "large"
    uri = _put_parquet(spark_jobs, "in/fails-late.parquet", not_a_number, row_group_size=500)
    request = BatchPredictionRequested.first(
        producer="test", pipeline=PIPELINE, input_uri=uri, engine="spark"
    )
    failed = await spark_jobs.jobs.run(request)
    assert isinstance(failed, BatchPredictionFailed), failed
    assert "FeatureError: feature 'mean area' must be a number" in failed.reason, failed.reason
    output = f"{OUTPUT_PREFIX}/{PIPELINE}/v1/{request.event_id}/"
    assert spark_jobs.store.list_keys(bucket=spark_jobs.bucket, prefix=output) == []
    good = _put_parquet(spark_jobs, "in/good.parquet", frame, row_group_size=500)
    done = await _run(spark_jobs, good, engine="spark")
    assert isinstance(done, BatchPredictionCompleted), done
    assert done.rows == len(frame)


async def test_a_master_without_a_live_worker_fails_the_job_promptly(
    settings: Settings, spark_cluster: SparkSettings, spark_jobs: SparkJobs, tmp_path: Path
) -> None:
    """A master of its own that no worker joins: the job fails once it has waited its while for one."""
    wait = 10.0
    lonely = spark_cluster.model_copy(
        update={"master_port": free_port(), "master_ui_port": free_port(), "executor_wait_s": wait}
    )
    master = master_server(settings.model_copy(update={"state_dir": tmp_path}), lonely)  # a pidfile apart
    process.start(master, timeout=120)
    uri = _put_parquet(spark_jobs, "in/unscored.parquet", _input(copies=1), row_group_size=500)
    spark_jobs.engine.stop()  # one SparkContext per process: the module's session makes way (and comes back)
    engine = SparkEngine(spark=lonely, access=spark_jobs.access)
    jobs = dataclasses.replace(
        spark_jobs,
        engine=engine,
        jobs=BatchJobs(
            store=spark_jobs.store, bucket=spark_jobs.bucket, lookup=spark_jobs.lookup, spark=engine
        ),
    )
    try:
        started = time.monotonic()
        failed = await _run(jobs, uri, engine="spark")
        waited = time.monotonic() - started
    finally:
        engine.stop()
        process.stop(master)
    assert isinstance(failed, BatchPredictionFailed), failed
    assert f"Spark at {lonely.master}: no worker offered resources" in failed.reason, failed.reason
    assert wait <= waited < wait + 60, waited  # the session's start and the wait; no longer a hang


async def test_a_master_that_does_not_answer_fails_the_job_with_its_address(spark_jobs: SparkJobs) -> None:
    """Last in the module: naming another master stops the session the other tests share."""
    uri = _put_parquet(spark_jobs, "in/small.parquet", _input(copies=1), row_group_size=500)
    nowhere = f"spark://127.0.0.1:{free_port()}"
    request = BatchPredictionRequested.first(
        producer="test", pipeline=PIPELINE, input_uri=uri, engine="spark", spark_master=nowhere
    )
    failed = await spark_jobs.jobs.run(request)  # Spark gives up on a master after about a minute
    assert isinstance(failed, BatchPredictionFailed), failed
    assert f"Spark at {nowhere}" in failed.reason, failed.reason
