"""The executors' half of batch scoring on Spark: how they reach MinIO, the model they receive,
the parts they score.

Everything here is shipped to (or imported on) the executors, which read no Conveyor settings or
secrets files: ``S3Access`` carries the deploy service's MinIO endpoint and keys, ``ShippedModel``
the verified model's bytes, checked against their digest again before they are loaded. The driver's
half, which plans the parts and runs the job, is ``services.deploy.batch_spark``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from services.deploy.batch_io import BatchRefused, score_batches
from services.deploy.serving.predict import ModelCard, features_frame
from services.deploy.serving.runtime import OnnxRuntime, Runtime, SklearnRuntime
from shared.model_format import load_model
from shared.settings import Settings
from shared.storage import sha256_hex
from shared.uris import ObjectLocation


class ModelAltered(ValueError):
    """Model bytes that no longer match the digest they were verified against."""


@dataclass(frozen=True)
class S3Access:
    """How executors reach MinIO (they do not read Conveyor's settings or secrets files)."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Access:
        """The service's own MinIO endpoint and keys."""
        return cls(
            endpoint=settings.s3_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key.get_secret_value(),
            secure=settings.minio_secure,
        )

    def filesystem(self) -> fs.S3FileSystem:
        """A pyarrow S3 filesystem on MinIO."""
        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint,
            scheme="https" if self.secure else "http",
            region="us-east-1",
            allow_bucket_creation=False,
        )


@dataclass(frozen=True)
class ShippedModel:
    """A verified model as executors receive it: the bytes the runtime loads, their digest, the card."""

    card: ModelCard
    data: bytes
    sha256: str

    def runtime(self) -> Runtime:
        """The card's runtime over these bytes, once they match the digest checked on the driver."""
        if sha256_hex(self.data) != self.sha256:
            raise ModelAltered(f"model {self.card.pipeline} v{self.card.version} arrived altered")
        if self.card.runtime.name == "onnxruntime":
            return OnnxRuntime(self.data, self.card)
        return SklearnRuntime(load_model(self.data), self.card)


@dataclass(frozen=True)
class Part:
    """Rows of the input one task scores: whole row groups, numbered from ``first_row``."""

    index: int
    row_groups: tuple[int, ...]
    first_row: int


def shipped_model(tag: str) -> ShippedModel:
    """The stored version's runtime bytes (ONNX or skops), checked against the card's digest."""
    import bentoml  # the deploy service has it loaded already; executors never import it

    from services.deploy.serving.model_store import CARD_KEY, MODEL_FILE, ONNX_FILE

    stored = bentoml.models.get(tag)
    card = ModelCard.model_validate(stored.info.metadata[CARD_KEY])
    onnx = card.runtime.name == "onnxruntime"
    data = Path(stored.path_of(ONNX_FILE if onnx else MODEL_FILE)).read_bytes()
    digest = card.runtime.onnx_sha256 if onnx else card.sha256
    if digest is None or sha256_hex(data) != digest:
        raise ModelAltered(f"model {tag} in the BentoML store does not match its digest {digest}")
    return ShippedModel(card=card, data=data, sha256=digest)


def plan_parts(
    filesystem: fs.FileSystem, *, source: ObjectLocation, card: ModelCard, part_rows: int
) -> list[Part]:
    """Runs of whole row groups of about ``part_rows`` rows, refusing a file the model cannot score."""
    if not source.key.lower().endswith(".parquet"):
        raise BatchRefused(f"{source.key!r}: the Spark engine scores .parquet files (CSV: engine local)")
    with filesystem.open_input_file(f"{source.bucket}/{source.key}") as handle:
        metadata = pq.ParquetFile(handle).metadata
    features_frame(metadata.schema.to_arrow_schema().empty_table().to_pandas(), card)  # names what lacks
    parts: list[Part] = []
    groups: list[int] = []
    first = rows = 0
    for group in range(metadata.num_row_groups):
        if groups and rows + metadata.row_group(group).num_rows > part_rows:
            parts.append(Part(len(parts), tuple(groups), first))
            first, groups, rows = first + rows, [], 0
        groups.append(group)
        rows += metadata.row_group(group).num_rows
    return [*parts, Part(len(parts), tuple(groups), first)]  # an empty file: one empty part


def score_part(
    filesystem: fs.FileSystem, model: ShippedModel, *, source: ObjectLocation, part: Part, output: str
) -> int:
    """Score one part's row groups and stream its predictions to ``output`` (bucket/key); the rows."""
    runtime = _runtime(model)
    with filesystem.open_input_file(f"{source.bucket}/{source.key}") as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=True)
        batches: Iterator[pa.RecordBatch] = (
            parquet.iter_batches(row_groups=list(part.row_groups))
            if part.row_groups
            else iter([pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)])
        )
        with filesystem.open_output_stream(output) as sink:
            return score_batches(
                batches, card=model.card, sink=sink, runtime=runtime, first_row=part.first_row
            )


_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime(model: ShippedModel) -> Runtime:
    # Once per executor Python worker (Spark reuses them across tasks), keyed by the digest.
    with _runtimes_lock:
        if model.sha256 not in _runtimes:
            _runtimes.clear()
            _runtimes[model.sha256] = model.runtime()
        return _runtimes[model.sha256]
