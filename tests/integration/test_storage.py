"""The artifact store against a real MinIO: digests recorded, verified, and objects never rewritten."""

from __future__ import annotations

import io
import uuid

import pytest
from minio import Minio
from minio.error import S3Error

from shared.storage import (
    ArtifactStore,
    IntegrityError,
    ObjectConflictError,
    ObjectNotFoundError,
    sha256_hex,
)
from shared.uris import ObjectLocation, UnsafeUriError

pytestmark = pytest.mark.infra


def test_put_records_the_digest_and_get_verifies_it(store: ArtifactStore, bucket: str) -> None:
    data = b"model bytes"
    ref = store.put(ObjectLocation(bucket, "churn/model.bin"), data)
    assert ref.sha256 == sha256_hex(data)
    assert ref.size_bytes == len(data)
    assert ref.uri == f"s3://{bucket}/churn/model.bin"
    assert store.get(ref) == data
    assert store.exists(ObjectLocation(bucket, "churn/model.bin"))
    assert not store.exists(ObjectLocation(bucket, "churn/other.bin"))


def test_content_addressed_put_is_idempotent(store: ArtifactStore, bucket: str, minio: Minio) -> None:
    first = store.put_content_addressed(b"rows", bucket=bucket, prefix="churn/raw", suffix=".csv")
    before = minio.stat_object(bucket, store.locate(first.uri).key)
    again = store.put_content_addressed(b"rows", bucket=bucket, prefix="churn/raw", suffix=".csv")
    after = minio.stat_object(bucket, store.locate(first.uri).key)
    assert again == first
    assert first.uri.endswith(f"churn/raw/{sha256_hex(b'rows')}.csv")
    assert after.etag == before.etag and after.last_modified == before.last_modified  # not rewritten
    assert store.list_keys(bucket=bucket, prefix="churn/") == [store.locate(first.uri).key]


def test_other_content_at_an_existing_key_is_refused(store: ArtifactStore, bucket: str) -> None:
    location = ObjectLocation(bucket, "churn/report.json")
    ref = store.put(location, b'{"ok": true}')
    with pytest.raises(ObjectConflictError, match="immutable"):
        store.put(location, b'{"ok": false}')
    assert store.get(ref) == b'{"ok": true}'  # what was stored is intact


def test_a_tampered_object_is_detected(store: ArtifactStore, bucket: str, minio: Minio) -> None:
    ref = store.put(ObjectLocation(bucket, "churn/model.pkl"), b"trusted model")
    evil = b"malicious pickle"
    # An attacker with write access replaces the bytes, even keeping the recorded digest metadata.
    minio.put_object(bucket, "churn/model.pkl", io.BytesIO(evil), len(evil), metadata={"sha256": ref.sha256})
    with pytest.raises(IntegrityError, match="modified after it was written"):
        store.get(ref)
    with pytest.raises(IntegrityError):
        store.get_verified(ObjectLocation(bucket, "churn/model.pkl"))


def test_an_object_without_a_recorded_digest_is_not_trusted(
    store: ArtifactStore, bucket: str, minio: Minio
) -> None:
    minio.put_object(bucket, "churn/foreign.bin", io.BytesIO(b"x"), 1)
    with pytest.raises(IntegrityError, match="no recorded digest"):
        store.get_verified(ObjectLocation(bucket, "churn/foreign.bin"))
    assert store.read(ObjectLocation(bucket, "churn/foreign.bin")) == b"x"


def test_missing_objects_and_foreign_buckets(store: ArtifactStore, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.read(ObjectLocation(bucket, "churn/missing.csv"))
    with pytest.raises(UnsafeUriError, match="outside"):
        store.locate("s3://some-other-bucket/churn/x.csv")


def test_ensure_buckets_creates_them_once(minio: Minio) -> None:

    names = (f"test-{uuid.uuid4().hex[:16]}", f"test-{uuid.uuid4().hex[:16]}")
    store = ArtifactStore(minio, buckets=names)
    try:
        store.ensure_buckets()
        store.ensure_buckets()  # a second start is harmless
        assert all(minio.bucket_exists(name) for name in names)
    finally:
        for name in names:
            if minio.bucket_exists(name):
                minio.remove_bucket(name)


def test_a_missing_object_is_reported_missing_not_untrusted(store: ArtifactStore, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.get_verified(ObjectLocation(bucket, "churn/never-written.json"))


def test_a_reader_streams_the_object_from_its_position_in_pieces(
    store: ArtifactStore, bucket: str, minio: Minio
) -> None:
    data = bytes(range(256)) * 40_000  # about 10 MiB
    location = ObjectLocation(bucket, "landing/big.bin")
    minio.put_object(bucket, location.key, io.BytesIO(data), len(data))
    reader = store.open(location)
    pieces = list(reader.chunks(1024 * 1024))
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= 1024 * 1024 and len(pieces) >= 10
    assert reader.tell() == len(data) and list(reader.chunks(1024)) == []
    reader.seek(len(data) - 5)
    assert list(reader.chunks(1024)) == [data[-5:]]


def test_a_reader_refuses_bytes_of_an_object_replaced_after_it_was_opened(
    store: ArtifactStore, bucket: str, minio: Minio
) -> None:
    location = ObjectLocation(bucket, "landing/replaced.csv")
    minio.put_object(bucket, location.key, io.BytesIO(b"a,b\n1,2\n"), 8)
    reader = store.open(location)
    minio.put_object(bucket, location.key, io.BytesIO(b"a,b\n3,4\n"), 8)
    with pytest.raises(S3Error, match="PreconditionFailed"):
        list(reader.chunks(1024))
    with pytest.raises(S3Error, match="PreconditionFailed"):
        reader.read(4)


def test_an_artifact_over_one_part_is_sent_as_one_put(
    store: ArtifactStore, bucket: str, minio: Minio
) -> None:
    data = bytes(range(256)) * 24_576  # 6 MiB: minio-py alone would send two 5 MiB parts
    ref = store.put_content_addressed(data, bucket=bucket, prefix="churn/train", suffix=".parquet")
    stat = minio.stat_object(bucket, store.locate(ref.uri).key)
    assert "-" not in (stat.etag or "-")  # a multipart upload's ETag ends in -<parts>
    assert stat.size == len(data) and store.get(ref) == data
