"""Ingest one arrived dataset: locate, version, validate, profile, split and store it.

Plain work over the artifact-store port; it knows nothing about Kafka. The same bytes under
the same spec always give the same outcome, and nothing is written twice.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.ingest.datasets import DatasetIndex, Outcome
from services.ingest.reading import DatasetReadError, DatasetTooLargeError, check_fits
from services.ingest.report import render_validation_report
from services.ingest.row_hashes import row_hashes
from services.ingest.split import split_rows
from services.ingest.validation import (
    errors_in,
    read_dataset,
    unreadable,
    validate_dataset,
    warnings_in,
)
from shared.events import ArtifactRef, RuleResult
from shared.object_reader import ObjectReader
from shared.pipeline_spec import PipelineSpec, resolve_features
from shared.profile import DataProfile, profile_frame
from shared.spec_store import SpecStore, UnknownPipelineError
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import AllowedLocation, ObjectLocation, UnsafeUriError

Format = Literal["csv", "parquet"]
# Hashing streams the object through one GET, a piece of this size at a time.
_CHUNK = 1024 * 1024
# A split is copied out of the frame and encoded a slice at a time (one Parquet row group each), so
# storing it needs a slice's memory rather than a second copy of the data. A slice is an eighth of
# the split, so the copy stays small beside the data however small the file (at 100k rows, malloc's
# peak during ingest rose 26-27 MiB against 33-39 with 64k-row slices), within bounds: 64k-row groups
# encode fastest (16k: 0.68-0.70 s against 0.49-0.50 s at 1.6M rows).
_SLICES_PER_SPLIT = 8
_ROWS_PER_GROUP = (16_384, 65_536)
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class IngestPorts:
    """What ingesting needs from the outside world."""

    store: ArtifactStore
    specs: SpecStore
    datasets: DatasetIndex
    landing: AllowedLocation
    # Decoding a file that would need more is refused (CONVEYOR_INGEST_MAX_MEMORY_MB).
    max_memory_mb: int = 8192


@dataclass(frozen=True)
class Source:
    """The arrived object being ingested, pinned to the version that was hashed."""

    location: ObjectLocation
    reader: ObjectReader
    fmt: Format
    uri: str
    dataset_version: str


def ingest(ports: IngestPorts, *, pipeline: str, uri: str, fmt: Format | None) -> Outcome:
    """Validate the dataset at ``uri`` for ``pipeline``; the outcome names everything it stored."""
    try:
        spec = ports.specs.current(pipeline)
    except UnknownPipelineError as error:
        return _rejected(uri, rule("pipeline.known", str(error)))
    try:
        location = ports.store.locate(uri, allowed=[ports.landing])
    except UnsafeUriError as error:
        return _rejected(uri, rule("source.uri_allowed", str(error)))
    fmt = fmt or _format_of(location.key)
    if fmt is None:
        return _rejected(uri, rule("source.format", f"{location.key!r}: expected a .csv or .parquet object"))
    try:
        source = ports.store.open(location)
    except ObjectNotFoundError as error:
        return _rejected(uri, rule("source.exists", str(error)))

    dataset_version = _digest(source)
    known = ports.datasets.outcome(pipeline, dataset_version, spec.version)
    if known is not None:
        return known
    try:
        check_fits(_reopen(source), size=source.size, fmt=fmt, max_memory_mb=ports.max_memory_mb)
    except DatasetTooLargeError as error:
        # Not recorded: the refusal is about this service's setting, not about the data.
        return _rejected(uri, rule("source.size", str(error)))
    outcome = _validate(
        ports,
        spec=spec,
        source=Source(location=location, reader=source, fmt=fmt, uri=uri, dataset_version=dataset_version),
    )
    ports.datasets.record(pipeline, dataset_version, spec.version, outcome)
    if outcome.accepted:
        profile = ArtifactRef.model_validate(outcome.fields["profile"])
        ports.datasets.set_latest(pipeline, dataset_version=dataset_version, profile=profile, source_uri=uri)
    return outcome


def rule(name: str, message: str) -> RuleResult:
    """A failed rule about the arrival itself (before any data was read)."""
    return RuleResult(rule=name, passed=False, message=message[:4000])


def _validate(ports: IngestPorts, *, spec: PipelineSpec, source: Source) -> Outcome:
    dataset_version, uri, fmt = source.dataset_version, source.uri, source.fmt
    prefix = ports.datasets.prefix(spec.name, dataset_version)
    bucket = ports.datasets.bucket
    # What waits on MinIO or releases the GIL (Parquet encoding, numpy sorts) runs beside the rest:
    # the raw file's server-side copy while the file is decoded, the splits' encoding and upload
    # while the columns are profiled.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="ingest") as pool:
        raw_copy = pool.submit(
            ports.store.copy_content_addressed,
            source.location,
            sha256=dataset_version,
            size=source.reader.size,
            etag=source.reader.etag,
            bucket=bucket,
            prefix=f"{prefix}/raw",
            suffix=f".{fmt}",
        )
        previous = ports.datasets.latest_profile(spec.name)
        frame: pd.DataFrame | None = None
        try:
            if not source.reader.size:
                raise DatasetReadError("the file is empty")
            frame = read_dataset(_reopen(source.reader), fmt=fmt)
        except DatasetReadError as error:
            results = [unreadable(error)]
        else:
            hashes = row_hashes(frame)
            results = validate_dataset(frame, spec=spec, previous_profile=previous, hashes=hashes)

        profile: DataProfile | None = None
        splits: dict[str, Future[ArtifactRef]] = {}
        if frame is not None and not errors_in(results):
            features = resolve_features(spec, frame, previous=previous)
            profiling = pool.submit(
                profile_frame, frame, numeric=features.numeric, categorical=features.categorical
            )
            # The frame's columns as Arrow arrays: its numbers and Arrow-backed text are shared, not copied.
            table = pa.Table.from_pandas(frame, preserve_index=False)
            parts = split_rows(frame, spec=spec, hashes=hashes)
            for name, rows in zip(("train", "test"), parts, strict=True):
                splits[name] = pool.submit(
                    _put_parquet, ports.store, table, rows, bucket=bucket, prefix=f"{prefix}/{name}"
                )
            profile = profiling.result()
        report_html = render_validation_report(
            results, pipeline=spec.name, profile=profile, dataset_version=dataset_version, source_uri=uri
        )
        report = _put_report(ports, bucket=bucket, prefix=prefix, results=results, html=report_html)
        raw = raw_copy.result()
        stored = {name: split.result() for name, split in splits.items()}
    failures = errors_in(results)
    if failures or frame is None or profile is None:
        return Outcome(
            accepted=False,
            fields={
                "source_uri": uri,
                "dataset_version": dataset_version,
                "failures": _dump(failures),
                "report": report.model_dump(),
            },
        )

    put = ports.store.put_content_addressed
    refs = {
        "raw": raw,
        **stored,
        "profile": put(
            profile.model_dump_json().encode(), bucket=bucket, prefix=f"{prefix}/profile", suffix=".json"
        ),
        "report": report,
    }
    return Outcome(
        accepted=True,
        fields={
            "dataset_version": dataset_version,
            "spec_version": spec.version,
            "source_uri": uri,
            **{name: ref.model_dump() for name, ref in refs.items()},
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "warnings": _dump(warnings_in(results)),
        },
    )


def _rejected(uri: str, failure: RuleResult) -> Outcome:
    return Outcome(accepted=False, fields={"source_uri": uri, "failures": _dump([failure])})


def _put_report(
    ports: IngestPorts, *, bucket: str, prefix: str, results: list[RuleResult], html: str
) -> ArtifactRef:
    put = ports.store.put_content_addressed
    page = put(
        html.encode(), bucket=bucket, prefix=f"{prefix}/report", suffix=".html", content_type="text/html"
    )
    body = json.dumps({"rules": _dump(results), "html": page.uri}, indent=2).encode()
    return put(
        body, bucket=bucket, prefix=f"{prefix}/report", suffix=".json", content_type="application/json"
    )


def _put_parquet(
    store: ArtifactStore, table: pa.Table, rows: np.ndarray, *, bucket: str, prefix: str
) -> ArtifactRef:
    """Store the table's ``rows`` (positions) as Parquet."""
    buffer = io.BytesIO()
    # Dictionary encoding where values repeat (text, integers, flags): tried on float columns, whose
    # values rarely do, it costs as much as the rest of the encoding and saves nothing.
    repeating = [field.name for field in table.schema if not pa.types.is_floating(field.type)]
    group = row_group_rows(len(rows))
    with pq.ParquetWriter(buffer, table.schema, use_dictionary=repeating) as writer:
        for start in range(0, len(rows), group):
            writer.write_table(table.take(rows[start : start + group]))
    return store.put_content_addressed(buffer.getvalue(), bucket=bucket, prefix=prefix, suffix=".parquet")


def row_group_rows(split_rows: int) -> int:
    """Rows per Parquet row group of a split of ``split_rows`` rows."""
    fewest, most = _ROWS_PER_GROUP
    return min(max(split_rows // _SLICES_PER_SPLIT, fewest), most)


def _digest(reader: ObjectReader) -> str:
    """SHA-256 of the object, streamed in chunks: the file is never held whole."""
    digest = hashlib.sha256()
    reader.seek(0)
    for chunk in reader.chunks(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _reopen(reader: ObjectReader) -> Callable[[], BinaryIO]:
    """Open the object again from its start (each read is a ranged GET of the hashed version)."""

    def reopen() -> BinaryIO:
        reader.seek(0)
        return cast(BinaryIO, reader)

    return reopen


def _dump(results: list[RuleResult]) -> list[dict[str, object]]:
    return [r.model_dump(mode="json") for r in results]


def _format_of(key: str) -> Format | None:
    for extension, fmt in _EXTENSIONS.items():
        if key.lower().endswith(extension):
            return fmt
    return None
