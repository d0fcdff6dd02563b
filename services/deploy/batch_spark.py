"""Batch scoring on a Spark cluster: the same verified model and prediction function, on executors.

The driver (the deploy service) never holds the rows. It checks what can be checked without them
(the object exists, the model's features are columns of the file), plans *parts* (runs of whole
Parquet row groups of about ``part_rows`` rows, from the file's footer) and hands Spark one small
row per part. Each executor task reads its part's row groups straight from MinIO through pyarrow's
S3 filesystem (ranged GETs), scores them with ``batch_io.score_batches`` (the in-process job's
code, so the same row numbers, columns and types) and streams a Parquet part back to MinIO; the
driver gathers only each part's row count, then writes a manifest last (the ready marker). The
executors' half (MinIO access, the shipped model, planning and scoring a part) is
``services.deploy.batch_spark_parts``.

Why pyarrow's S3 filesystem rather than Spark's ``s3a``: s3a needs the Hadoop AWS jars and the AWS
SDK from Maven (a download and a version match with pyspark's Hadoop), while pyarrow is already
here, reads Parquet by row group (what the in-process job does) and writes what the in-process job
writes. Spark then schedules, retries and spreads the parts; it does not parse the file itself.

The model's bytes are read from the BentoML store and checked against the card's digest on the
driver (``ensure_imported`` has verified the artifact against MinIO before that), broadcast to the
executors, and checked against the digest again there before skops or ONNX Runtime loads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from minio.error import S3Error

from services.deploy.batch_spark_parts import Part, S3Access, ShippedModel, plan_parts, score_part
from services.deploy.batch_spark_settings import SparkSettings
from shared.storage import ArtifactStore, ObjectConflictError
from shared.uris import ObjectLocation

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import Row, SparkSession

MANIFEST = "_manifest.json"
PART_SCHEMA = "part long, key string, rows long"
# A deterministic input error fails every attempt alike: one retry covers a lost executor.
TASK_ATTEMPTS = 2
# How often a running job's executors are counted; how long a failed job's killed tasks may take to stop.
EXECUTOR_POLL_S = 0.5
SETTLE_S = 10.0

log = logging.getLogger("conveyor.deploy.spark")


class SparkJobFailed(ValueError):
    """A Spark job that failed on the executors; the message is the executors' own last line."""


@dataclass(frozen=True)
class SparkScored:
    """Where a Spark job wrote its predictions (a prefix of Parquet parts), and how many rows."""

    uri: str
    rows: int


class SparkEngine:
    """Batch jobs on a Spark master: one session per deploy service, one job at a time."""

    def __init__(self, *, spark: SparkSettings, access: S3Access) -> None:
        self._settings = spark
        self._access = access
        self._session: SparkSession | None = None
        self._lock = threading.Lock()

    def score(
        self,
        store: ArtifactStore,
        *,
        source: ObjectLocation,
        model: ShippedModel,
        output: ObjectLocation,
        master: str | None = None,
    ) -> SparkScored:
        """Score ``source`` on the cluster; predictions go to Parquet parts under ``output`` (a prefix)."""
        manifest = ObjectLocation(output.bucket, f"{output.key}/{MANIFEST}")
        uri = f"s3://{output.bucket}/{output.key}"  # a folder of parts, as Spark names its outputs
        if store.exists(manifest):  # a redelivered request: the first output stands
            return SparkScored(uri=uri, rows=int(json.loads(store.read(manifest))["rows"]))
        store.open(source).close()  # an unknown object is refused here, with the in-process reason
        parts = plan_parts(
            self._access.filesystem(), source=source, card=model.card, part_rows=self._settings.part_rows
        )
        with self._lock:
            master = master or self._settings.master
            try:
                session = self._session_for(master)
            except SparkJobFailed:
                raise
            except Exception as error:  # no master answered (Spark gives up after about a minute)
                self._drop_session()
                raise SparkJobFailed(f"Spark at {master}: {_failure(error)}") from error
            try:
                written = self._run(session, model=model, source=source, output=output, parts=parts)
            except SparkJobFailed:
                _remove_parts(store, output=output, manifest=manifest)
                raise
        rows = sum(int(row["rows"]) for row in written)
        summary = {"rows": rows, "parts": sorted(row["key"] for row in written), "model": model.sha256}
        with contextlib.suppress(ObjectConflictError):  # another delivery finished first: the same rows
            store.put(manifest, json.dumps(summary).encode(), content_type="application/json")
        return SparkScored(uri=uri, rows=rows)

    def _run(
        self,
        session: SparkSession,
        *,
        model: ShippedModel,
        source: ObjectLocation,
        output: ObjectLocation,
        parts: list[Part],
    ) -> list[Row]:
        """One row per part scored, or SparkJobFailed (the session dropped unless the input failed)."""
        context, access, out = session.sparkContext, self._access, f"{output.bucket}/{output.key}"
        shipped = context.broadcast(model)

        def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            filesystem, verified = access.filesystem(), shipped.value
            for frame in frames:
                for index, groups, first in frame.itertuples(index=False):
                    part = Part(int(index), tuple(int(g) for g in groups), int(first))
                    key = f"{out}/part-{part.index:05d}.parquet"
                    rows = score_part(filesystem, verified, source=source, part=part, output=key)
                    yield pd.DataFrame({"part": [part.index], "key": [key], "rows": [rows]})

        group, wait = f"conveyor-batch-{uuid.uuid4().hex}", self._settings.executor_wait_s
        starved = threading.Event()
        context.setJobGroup(group, f"score {source.uri} into s3://{out}")
        try:
            with _executors_awaited(context, group=group, wait=wait, starved=starved):
                tasks = [(p.index, list(p.row_groups), p.first_row) for p in parts]
                plan = context.parallelize(tasks, numSlices=len(tasks)).toDF(
                    "part long, row_groups array<int>, first_row long"
                )
                return plan.mapInPandas(score, schema=PART_SCHEMA).collect()  # one small row per part
        except Exception as error:
            _settle(context)  # before the caller removes the parts: a cancelled task may still be writing one
            if type(error).__name__ != "PythonException":  # not the input: a lost master, say
                self._drop_session()
            if starved.is_set():
                raise SparkJobFailed(
                    f"Spark at {context.master}: no worker offered resources within {wait:g} s (no worker "
                    f"alive, or none with a free core and {self._settings.executor_memory} for an executor)"
                ) from error
            raise _failure(error) from error
        finally:
            with contextlib.suppress(Exception):  # a stopped session has nothing left to free
                shipped.unpersist()

    def stop(self) -> None:
        """Stop the session (its driver JVM), if one was started."""
        with self._lock:
            self._drop_session()

    def _drop_session(self) -> None:
        # The caller holds the lock; the next job starts a new session.
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._session.stop()
            self._session = None

    def _session_for(self, master: str) -> SparkSession:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise SparkJobFailed("the Spark engine needs pyspark: pip install -e '.[spark]'") from None

        if self._session is not None and self._session.sparkContext.master != master:
            self._drop_session()
        if self._session is None:
            # Executors run Python functions with the interpreter the driver names in PYSPARK_PYTHON
            # (sent with each function), else `python3` on their PATH: name this venv's, which has Conveyor.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            settings = self._settings
            self._session = (
                SparkSession.builder.master(master)
                .appName("conveyor-batch")
                .config("spark.driver.memory", settings.driver_memory)
                .config("spark.executor.memory", settings.executor_memory)
                .config("spark.executor.cores", "1")
                .config("spark.driver.host", settings.host)
                .config("spark.driver.bindAddress", settings.host)
                .config("spark.pyspark.python", sys.executable)
                .config("spark.task.maxFailures", str(TASK_ATTEMPTS))
                .config("spark.ui.enabled", "false")
                .getOrCreate()
            )
        return self._session


@contextlib.contextmanager
def _executors_awaited(
    context: SparkContext, *, group: str, wait: float, starved: threading.Event
) -> Iterator[None]:
    """Cancel ``group``'s jobs, setting ``starved``, once the application has had no executor ``wait`` s.

    A standalone master holds a job whose application got no executor (no live worker, or none with
    the resources asked for) for ever, logging "Initial job has not accepted any resources"; so does
    a job whose workers all died. The clock runs only while there is no executor at all, so a long
    task on a live one is never cut short.
    """
    done = threading.Event()

    def watch() -> None:
        since = time.monotonic()
        try:
            while not done.wait(EXECUTOR_POLL_S):
                if _executors(context) > 0:
                    since = time.monotonic()
                elif time.monotonic() - since >= wait:
                    starved.set()
                    context.cancelJobGroup(group)
                    return
        except Exception:  # a stopped context: its job fails on its own
            log.warning("stopped watching Spark job group %s for executors", group, exc_info=True)

    watcher = threading.Thread(target=watch, name="conveyor-spark-executors", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _executors(context: SparkContext) -> int:
    """The application's executors now (the status tracker lists the driver among them)."""
    return len(context.statusTracker().getExecutorInfos()) - 1


def _settle(context: SparkContext) -> None:
    """Wait, a little at most, until no executor of ``context`` runs a task (killed ones report late)."""
    deadline = time.monotonic() + SETTLE_S
    with contextlib.suppress(Exception):  # a stopped context runs nothing
        while any(info.numRunningTasks for info in context.statusTracker().getExecutorInfos()):
            if time.monotonic() > deadline:
                log.warning("Spark tasks still running %g s after their job failed", SETTLE_S)
                return
            time.sleep(EXECUTOR_POLL_S)


def _remove_parts(store: ArtifactStore, *, output: ObjectLocation, manifest: ObjectLocation) -> None:
    """Delete the parts a failed job left under ``output`` (a prefix), unless a manifest marks it finished."""
    if store.exists(manifest):  # another delivery of the request finished: its output stands
        return
    try:
        for key in store.list_keys(bucket=output.bucket, prefix=f"{output.key}/"):
            store.remove(ObjectLocation(output.bucket, key))
    except S3Error:  # the job's own failure is the answer; the leftovers are named in the log
        log.warning(
            "could not remove the parts of failed job s3://%s/%s/", output.bucket, output.key, exc_info=True
        )


def _failure(error: Exception) -> SparkJobFailed:
    """The error's own line out of Spark's wrapping: an executor's last Python error, else the first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if type(error).__name__ == "PythonException":  # the executor's traceback, its own error last
        ours = [line for line in lines if line.split(":", 1)[0].endswith(("Error", "Refused", "Invalid"))]
        return SparkJobFailed(ours[-1] if ours else lines[-1] if lines else "an executor failed")
    named = [line for line in lines if "Exception:" in line or "Error:" in line]
    return SparkJobFailed(named[0] if named else lines[0] if lines else type(error).__name__)
