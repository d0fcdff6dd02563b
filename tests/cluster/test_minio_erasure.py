"""MinIO over four drives (one erasure set): a drive's directory removed mid-flow loses nothing, and heals."""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.minio import drive_dirs, start_minio, stop_minio
from infra.process import wait_until
from shared.settings import Settings
from shared.storage import ArtifactStore, minio_client
from shared.uris import ObjectLocation
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

DRIVES = 4
BATCH = 40  # objects written before the loss, while the drive is gone, and after it is back
# Both sizes: one inlined into each drive's metadata, one split into shards across the drives.
SIZES = (3_000, 300_000)


@pytest.fixture(scope="module")
def erasure(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A MinIO of its own over four drive directories; stopped by pid at the end."""
    erasure = settings.model_copy(
        update={
            "minio_drives": DRIVES,
            "minio_port": free_port(),
            "minio_console_port": free_port(),
            "minio_endpoint": None,
            "state_dir": tmp_path_factory.mktemp("erasure-state"),
        }
    )
    start_minio(erasure)
    yield erasure
    stop_minio(erasure)


def test_lost_drive_loses_nothing_and_heals_when_back(erasure: Settings) -> None:
    client = minio_client(erasure)
    bucket = f"erasure-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket)
    store = ArtifactStore(client, buckets=(bucket,))
    written: dict[str, str] = {}

    def write(first: int) -> None:
        for n in range(first, first + BATCH):
            data = hashlib.sha256(f"{bucket}-{n}".encode()).digest() * (SIZES[n % 2] // 32)
            ref = store.put(ObjectLocation(bucket, f"objects/{n:04d}.bin"), data)
            written[f"objects/{n:04d}.bin"] = ref.sha256

    def read_all() -> None:
        for key, digest in written.items():
            store.get_verified(ObjectLocation(bucket, key), expected_sha256=digest)

    write(0)
    lost = drive_dirs(erasure)[1]
    shutil.rmtree(lost)  # the drive is gone, with every shard it held
    write(BATCH)  # writes go on (write quorum is 3 of 4)
    read_all()  # and every object, old and new, reads back intact from the other three

    # The drive comes back, empty (MinIO may have made the directory again already: it holds no
    # format and none of the shards written before the loss).
    lost.mkdir(exist_ok=True)
    back = time.monotonic()
    write(2 * BATCH)
    healed = wait_until(lambda: all(_on_drive(lost, bucket, key) for key in written), timeout=240)
    missing = [key for key in written if not _on_drive(lost, bucket, key)]
    assert healed, f"MinIO did not heal {len(missing)} of {len(written)} objects onto {lost}: {missing[:5]}"
    read_all()
    print(f"{len(written)} objects intact; the returned drive healed in {time.monotonic() - back:.1f}s")


def _on_drive(drive: Path, bucket: str, key: str) -> bool:
    """Whether the drive holds the object's metadata (and so its shard or inlined data)."""
    return (drive / bucket / key / "xl.meta").is_file()
