"""The artifact store port: immutable, digest-checked objects in MinIO (S3 API)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.events import ArtifactRef
from shared.settings import Settings
from shared.uris import AllowedLocation, ObjectLocation, parse_object_uri

DIGEST_METADATA = "sha256"
_DIGEST_HEADER = f"x-amz-meta-{DIGEST_METADATA}"
_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


class IntegrityError(Exception):
    """An object's bytes do not match the digest recorded when it was written."""


class ObjectConflictError(Exception):
    """An immutable object already exists with other content."""


class ObjectNotFoundError(Exception):
    """No object at that location."""


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def minio_client(settings: Settings) -> Minio:
    """A MinIO client for the configured endpoint."""
    # A larger pool than minio's default (10): the registry reads its journal with 16 threads.
    http = urllib3.PoolManager(
        maxsize=32,
        timeout=urllib3.Timeout(connect=5.0, read=60.0),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key.get_secret_value(),
        secure=settings.minio_secure,
        http_client=http,
    )


class ArtifactStore:
    """Immutable objects written with their SHA-256 and verified on every read."""

    def __init__(self, client: Minio, *, buckets: Sequence[str]) -> None:
        self._client = client
        self.buckets = tuple(buckets)

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """A store over the configured landing and artifacts buckets."""
        return cls(minio_client(settings), buckets=(settings.landing_bucket, settings.artifacts_bucket))

    def ensure_buckets(self) -> None:
        """Create the store's buckets if they do not exist yet."""
        for bucket in self.buckets:
            if not self._client.bucket_exists(bucket):
                try:
                    self._client.make_bucket(bucket)
                except S3Error as error:
                    # Another service may have created it between the check and the call.
                    if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def locate(self, uri: str, *, allowed: Iterable[AllowedLocation] | None = None) -> ObjectLocation:
        """Parse ``uri``, refusing anything outside ``allowed`` (default: the store's buckets)."""
        if allowed is None:
            allowed = [AllowedLocation(bucket) for bucket in self.buckets]
        return parse_object_uri(uri, allowed=allowed)

    def put(
        self, location: ObjectLocation, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> ArtifactRef:
        """Write ``data`` once; writing the same bytes again is a no-op, other bytes a conflict."""
        digest = sha256_hex(data)
        recorded = self._recorded_digest(location)
        if recorded is None:
            self._client.put_object(
                location.bucket,
                location.key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={DIGEST_METADATA: digest},
            )
        elif recorded != digest:
            raise ObjectConflictError(
                f"{location.uri} already holds other content (sha256 {recorded}); objects are immutable"
            )
        return ArtifactRef(uri=location.uri, sha256=digest, size_bytes=len(data))

    def replace(
        self, location: ObjectLocation, data: bytes, *, content_type: str = "application/json"
    ) -> ArtifactRef:
        """Overwrite a small mutable pointer (such as "the current spec"); never used for artifacts."""
        digest = sha256_hex(data)
        self._client.put_object(
            location.bucket,
            location.key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata={DIGEST_METADATA: digest},
        )
        return ArtifactRef(uri=location.uri, sha256=digest, size_bytes=len(data))

    def put_content_addressed(
        self,
        data: bytes,
        *,
        bucket: str,
        prefix: str,
        suffix: str = "",
        content_type: str = "application/octet-stream",
    ) -> ArtifactRef:
        """Write ``data`` under ``prefix/<sha256><suffix>``."""
        key = f"{prefix.rstrip('/')}/{sha256_hex(data)}{suffix}"
        return self.put(ObjectLocation(bucket, key), data, content_type=content_type)

    def get(self, ref: ArtifactRef) -> bytes:
        """The bytes of ``ref``, verified against the digest recorded in the reference."""
        return self.get_verified(self.locate(ref.uri), expected_sha256=ref.sha256)

    def get_verified(self, location: ObjectLocation, *, expected_sha256: str | None = None) -> bytes:
        """The bytes at ``location``, verified against ``expected_sha256`` or the digest stored with it."""
        expected = expected_sha256
        if expected is None:
            headers = self._stat_headers(location)
            if headers is None:
                raise ObjectNotFoundError(f"no object at {location.uri}")
            expected = headers.get(_DIGEST_HEADER)
        if expected is None:
            raise IntegrityError(f"{location.uri} has no recorded digest; refusing to trust it")
        data = self.read(location)
        actual = sha256_hex(data)
        if actual != expected:
            raise IntegrityError(
                f"{location.uri} was modified after it was written: sha256 {actual}, expected {expected}"
            )
        return data

    def read(self, location: ObjectLocation) -> bytes:
        """The raw bytes at ``location``, for objects that arrive from outside (no digest yet)."""
        try:
            response = self._client.get_object(location.bucket, location.key)
        except S3Error as error:
            if error.code in _MISSING_CODES:
                raise ObjectNotFoundError(f"no object at {location.uri}") from error
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, location: ObjectLocation) -> bool:
        """Whether an object is at ``location``."""
        return self._stat_headers(location) is not None

    def list_keys(self, *, bucket: str, prefix: str) -> list[str]:
        """Keys under ``prefix`` in ``bucket``, recursively, sorted."""
        objects = self._client.list_objects(bucket, prefix=prefix, recursive=True)
        return sorted(obj.object_name for obj in objects if obj.object_name is not None)

    def _recorded_digest(self, location: ObjectLocation) -> str | None:
        headers = self._stat_headers(location)
        if headers is None:
            return None
        return headers.get(_DIGEST_HEADER)

    def _stat_headers(self, location: ObjectLocation) -> dict[str, str] | None:
        try:
            stat = self._client.stat_object(location.bucket, location.key)
        except S3Error as error:
            if error.code in _MISSING_CODES:
                return None
            raise
        return {name.lower(): value for name, value in (stat.metadata or {}).items()}
