"""Uploading a dataset to the landing bucket: streamed from disk in parallel multipart parts.

A file is never read whole into memory: minio's ``put_object`` reads one part at a time and
uploads up to ``PARALLEL_PARTS`` of them at once (its pool blocks the reader when all are busy,
so at most that many parts are held). Progress is reported as parts are read, through minio's
own progress protocol (``set_meta`` / ``update``).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from shared.settings import Settings
from shared.storage import minio_client
from shared.uris import safe_segment

# Parts of up to 16 MiB, 4 in flight: a 1 GiB file is 64 parts and at most 64 MiB is held at once.
PART_SIZE = 16 * 1024 * 1024
PARALLEL_PARTS = 4
# S3's smallest part (but the last).
MIN_PART_SIZE = 5 * 1024 * 1024


class UploadProgress(Protocol):
    """What minio reports progress to (its ``ProgressType``)."""

    def set_meta(self, object_name: str, total_length: int) -> None:
        """The object's name and size, before the first byte."""

    def update(self, length: int) -> None:
        """``length`` more bytes were read for upload."""


def upload_file(
    settings: Settings,
    *,
    pipeline: str,
    filename: str,
    data: bytes | Path,
    progress: UploadProgress | None = None,
) -> str:
    """Upload ``data`` to the landing bucket under ``<pipeline>/``; returns its ``s3://`` URI."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = safe_segment(Path(filename).name, what="file name")
    # A fresh key per upload; a dataset's version is the hash of its bytes, not its key.
    key = f"{safe_segment(pipeline, what='pipeline')}/{stamp}-{uuid.uuid4().hex[:8]}-{name}"
    client = minio_client(settings)
    if not client.bucket_exists(settings.landing_bucket):
        client.make_bucket(settings.landing_bucket)
    with _opened(data) as (stream, length):
        client.put_object(
            settings.landing_bucket,
            key,
            stream,
            length,
            part_size=part_size(length),
            num_parallel_uploads=PARALLEL_PARTS,
            progress=progress,
        )
    return f"s3://{settings.landing_bucket}/{key}"


def part_size(length: int) -> int:
    """Parts small enough that a file of a few parts still uploads them side by side.

    A 12 MB file in one 16 MiB part went up in one request; in three 5 MiB parts it takes about
    the time of the MinIO client's own ``fput_object`` (0.14 against 0.16 s here).
    """
    return min(PART_SIZE, max(MIN_PART_SIZE, -(-length // PARALLEL_PARTS)))


@contextmanager
def _opened(data: bytes | Path) -> Iterator[tuple[BinaryIO, int]]:
    if isinstance(data, bytes):
        yield io.BytesIO(data), len(data)
        return
    with data.open("rb") as stream:
        yield stream, data.stat().st_size


class ProgressBar:
    """A rich progress bar with bytes, rate and time left, fed by minio's upload."""

    def __init__(self, console: Console, *, description: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(description, total=None)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def set_meta(self, object_name: str, total_length: int) -> None:
        """The size to fill."""
        self._progress.update(self._task, total=total_length)

    def update(self, length: int) -> None:
        """More bytes sent."""
        self._progress.advance(self._task, length)
