"""Batch scoring: rows/s of a BatchPredictionRequested job (Parquet in MinIO → predictions in MinIO).

The deploy service runs as a process with both models approved for batch jobs only (no endpoint).
The clock runs from publishing the request to receiving BatchPredictionCompleted. The baseline is
in-process scoring of the same frame, already in memory, producing what the job writes: class
probabilities with one ``predict_proba`` and the label as their arg-max, called twice back to back
per round (the first call after other work pays for fresh memory; the target is judged against
the better call). The job's steps are also
replayed here one by one (read, parse, feature frame, predict, output table and Parquet, write) to
show where its time goes.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.deploy.batch_io import PREDICTION_COLUMN, input_batches, prediction_batch
from services.deploy.compile import choose_runtime
from services.deploy.serving.runtime import OnnxRuntime
from shared.events import BatchPredictionRequested
from shared.model_format import load_model
from shared.storage import sha256_hex
from shared.uris import ObjectLocation
from tests.bench.breakdown import card_of
from tests.bench.deploy_stack import DeployStack
from tests.bench.harness import BenchContext
from tests.bench.load import median
from tests.bench.models import KINDS, LABELS, Fitted, Kind, fitted, scoring_frame
from tests.bench.report import Section, now
from tests.integration.deploy.fixtures import model_artifact

# This round's goals: the job at least as fast as scikit-learn in process for the linear model,
# within 10 % of it for the forest (the compiled runtime serves both).
TARGETS: dict[Kind, float] = {"lr": 1.0, "rf": 0.9}

ANALYSIS = """
The job streams. The input is read with ranged GETs (a row group's column chunks as a few
coalesced ranges, never the whole object as one buffer) and decoded by pyarrow in chunks of
131,072 rows; in a reading thread each chunk goes from its Arrow columns straight into the one
float matrix the compiled model takes (no DataFrame), while the previous chunk is scored by
ONNX Runtime with every core (`CONVEYOR_BATCH_THREADS`); the predictions go out chunk by chunk
through a Parquet writer that dictionary-encodes only the label. The verified model stays in
memory per process, keyed by its digest; the Kafka hop is small (the handler's own time is within
0.05-0.2 s of the end to end time).
For the forest the trees dominate, and two threads score them faster than scikit-learn's one.
For the logistic regression the model is nearly free and the job is bound by moving the data:
downloading the 252 MB input alone takes about 0.2 s (no faster with 2, 4 or 8 parallel ranged
GETs: 0.17-0.26 s measured), which is most of what a warm in-process `predict_proba` takes for
the whole million rows. The input is one row group, and Parquet cannot decode a row group before
all of its column chunks have arrived, so the download cannot overlap scoring. Then come the
decode, the output's Parquet, and its sha256 and upload. A job that reads from and writes to
the object store cannot meet 1.0x of a warm in-process call on data already in memory for
this model. The baseline's first call of a round is shown beside it: on this VM, touching
fresh memory costs several times the compute (a first call after other work took 0.8-1.8 s
against 0.23 s for the next in a plain process). Runs before this one judged the target on
that first call only.
"""


def baseline_score(model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities, the plain way: one predict_proba, the label as its arg-max."""
    probabilities = model.predict_proba(frame)
    return model.classes_[probabilities.argmax(axis=1)], probabilities


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    value = call()
    return value, time.perf_counter() - began


def replay(stack: DeployStack, model: Fitted, location: ObjectLocation) -> dict[str, float]:
    """The job's steps, timed one by one in this process (the job overlaps reading with scoring)."""
    card = card_of(model)
    artifact = model_artifact(model.model)
    _, t_model = _timed(lambda: (sha256_hex(artifact), load_model(artifact)))
    # The runtime the job serves through: ONNX Runtime with every core, as proven on the test split.
    choice = choose_runtime(model.model, card, model.data.test)
    assert choice.onnx is not None, choice.runtime.reason
    runtime = OnnxRuntime(choice.onnx, card, threads=os.cpu_count() or 1)
    batches, t_read = _timed(lambda: list(input_batches(stack.store.open(location), key=location.key)))
    inputs, t_inputs = _timed(lambda: [runtime.inputs_of_batch(batch) for batch in batches])
    predicted, t_predict = _timed(lambda: [runtime.predict(chunk) for chunk in inputs])

    def write() -> bytes:
        sink = pa.BufferOutputStream()
        chunks, first = [], 0
        for batch, chunk in zip(batches, predicted, strict=True):
            chunks.append(prediction_batch(batch, chunk, card, first_row=first))
            first += batch.num_rows
        pq.write_table(pa.Table.from_batches(chunks), sink, use_dictionary=[PREDICTION_COLUMN])
        return sink.getvalue().to_pybytes()

    output, t_write = _timed(write)
    scratch = ObjectLocation(location.bucket, f"{location.key}.replay-{uuid.uuid4().hex[:8]}.parquet")
    _, t_put = _timed(lambda: stack.store.put(scratch, output))
    return {
        "verify + load model": t_model,
        "read + decode Parquet": t_read,
        "inputs from Arrow": t_inputs,
        "ONNX Runtime predict": t_predict,
        "output batches + Parquet": t_write,
        "put (sha256 + upload)": t_put,
    }


async def run(context: BenchContext) -> Section:
    """Rows per second of the job and of in-process scoring, per model, alternated."""
    started = time.perf_counter()
    n_rows = 50_000 if context.quick else 1_000_000
    # Three rounds, so that the median drops the first job's model load and a noisy neighbour.
    rounds_n = 1 if context.quick else 3
    stack = await DeployStack.start(context, name="batch")
    section = Section(
        key="batch",
        title=f"5. Batch scoring, {n_rows:,} rows",
        method=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
        + f" {rounds_n} alternated round(s) per model, medians.",
        quick=context.quick,
    )
    try:
        frame = scoring_frame(fitted("lr", "any").data, n_rows=n_rows)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        location = ObjectLocation(stack.settings.landing_bucket, f"bench/{context.run_id}/input.parquet")
        await asyncio.to_thread(stack.store.put, location, buffer.getvalue())
        section.notes.append(
            f"input: {len(buffer.getvalue()) / 1e6:.0f} MB of Parquet, 30 float features + an id"
        )
        del buffer
        for kind in KINDS:
            model = fitted(kind, f"bench-batch-{kind}-{context.run_id}")
            await stack.approve_for_batch(model)
            await _measure(
                context, stack, section, model=model, frame=frame, location=location, rounds_n=rounds_n
            )
    finally:
        await stack.stop()
    section.analysis = ANALYSIS
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section


async def _measure(
    context: BenchContext,
    stack: DeployStack,
    section: Section,
    *,
    model: Fitted,
    frame: pd.DataFrame,
    location: ObjectLocation,
    rounds_n: int,
) -> None:
    kind = model.kind
    features = frame[model.data.features]
    job_rates: list[float] = []
    base_rates: list[float] = []
    cold_rates: list[float] = []
    job_rounds: list[str] = []
    for index in range(rounds_n):
        for side in ("job", "baseline") if index % 2 == 0 else ("baseline", "job"):
            if side == "job":
                request = BatchPredictionRequested.first(
                    producer="bench", pipeline=model.spec.name, input_uri=location.uri, version=1
                )
                began = time.perf_counter()
                done = await stack.batch(request, timeout_s=900)
                seconds = time.perf_counter() - began
                job_rates.append(done.rows / seconds)
                job_rounds.append(f"{seconds:.2f} ({done.duration_seconds:.2f} in the handler)")
            else:
                # Twice back to back: the first call after other work pays for touching fresh memory
                # (several times the compute on this VM), the second is scikit-learn at its best.
                # The target is judged against the better of the two.
                calls = [
                    (await asyncio.to_thread(_timed, lambda: baseline_score(model.model, features)))[1]
                    for _ in range(2)
                ]
                first, again = calls
                base_rates.append(len(features) / min(first, again))
                cold_rates.append(len(features) / first)
    job, base, cold = median(job_rates), median(base_rates), median(cold_rates)
    target = TARGETS[kind]
    section.add(
        f"{LABELS[kind]}: rows/s, job vs in-process (best of 2 back to back)",
        job,
        base,
        unit="rows/s",
        digits=0,
        target=f"≥ {target}x",
        met=job >= target * base,
    )
    section.add(f"{LABELS[kind]}: rows/s, job vs in-process (first call of a round)", job, cold,
                unit="rows/s", digits=0)  # fmt: skip
    steps = await asyncio.to_thread(replay, stack, model, location)
    _, predict_only = await asyncio.to_thread(_timed, lambda: model.model.predict(features))
    section.notes.append(
        f"{LABELS[kind]}: the job's steps replayed here (s): "
        + "; ".join(f"{step} {seconds:.2f}" for step, seconds in steps.items())
        + f"; sum {sum(steps.values()):.2f} s against the job's {len(frame) / job:.2f} s end to end "
        f"(per round, s: {', '.join(job_rounds)}; the first loads the model); "
        f"baseline {len(frame) / base:.2f} s at its best, {len(frame) / cold:.2f} s as a round's first call "
        f"(plain `predict` alone: {predict_only:.2f} s)"
    )
