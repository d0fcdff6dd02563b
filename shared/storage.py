"""The artifact store port: immutable, digest-checked objects in MinIO (S3 API)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import S3Error
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE, DictType

from shared.events import ArtifactRef
from shared.object_reader import ObjectReader
from shared.settings import Settings
from shared.uris import AllowedLocation, ObjectLocation, parse_object_uri

DIGEST_METADATA = "sha256"
_DIGEST_HEADER = f"x-amz-meta-{DIGEST_METADATA}"
_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


def _one_part(size: int) -> int:
    """The part size that sends ``size`` bytes already in memory as one PUT, where S3 allows one.

    minio-py otherwise splits anything over 5 MiB into 5 MiB parts: a copy of each part, a request
    each, and twice the client's CPU for a dataset's split; one PUT sends the bytes as they are.
    """
    return size if MIN_PART_SIZE <= size <= MAX_PART_SIZE else 0


class IntegrityError(Exception):
    """An object's bytes do not match the digest recorded when it was written."""


class BucketMissingError(RuntimeError):
    """A bucket that does not exist, and that these credentials may not create."""


class ObjectConflictError(Exception):
    """An immutable object already exists with other content."""


class ObjectNotFoundError(Exception):
    """No object at that location."""


class ObjectExistsError(ObjectConflictError):
    """A create-only write found an object already there (another writer was first)."""


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
                    if error.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        continue
                    if error.code == "AccessDenied":  # a service's own user (shared.access) makes none
                        raise BucketMissingError(
                            f"bucket {bucket!r} does not exist, and these MinIO credentials may not create "
                            "it: buckets are made with the root keys (`conveyor up`, or docker-compose's "
                            "minio-users step)"
                        ) from None
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
        return self._put(location, data, digest=sha256_hex(data), content_type=content_type)

    def _put(self, location: ObjectLocation, data: bytes, *, digest: str, content_type: str) -> ArtifactRef:
        recorded = self._recorded_digest(location)
        if recorded is None:
            self._client.put_object(
                location.bucket,
                location.key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={DIGEST_METADATA: digest},
                part_size=_one_part(len(data)),
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

    def create(
        self, location: ObjectLocation, data: bytes, *, content_type: str = "application/json"
    ) -> ArtifactRef:
        """Write ``data`` only if no object is at ``location``: one atomic conditional PUT.

        MinIO checks ``If-None-Match: *`` under its own lock, so of two writers of one key exactly
        one succeeds and the other gets ``ObjectExistsError``: a fence that ``put``'s look-then-write
        is not. minio-py 7.2's ``put_object`` turns every header it does not know into user
        metadata, hence its lower-level ``_put_object``, which sends the headers as given.
        """
        digest = sha256_hex(data)
        headers: DictType = {
            "If-None-Match": "*",
            "Content-Type": content_type,
            _DIGEST_HEADER: digest,
        }
        try:
            self._client._put_object(location.bucket, location.key, data, headers=headers)
        except S3Error as error:
            if error.code == "PreconditionFailed":
                raise ObjectExistsError(f"{location.uri} was written by another writer first") from error
            raise
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
        digest = sha256_hex(data)  # once: large artifacts (a dataset's splits) take a while to hash
        key = f"{prefix.rstrip('/')}/{digest}{suffix}"
        return self._put(ObjectLocation(bucket, key), data, digest=digest, content_type=content_type)

    def copy_content_addressed(
        self,
        source: ObjectLocation,
        *,
        sha256: str,
        size: int,
        etag: str | None,
        bucket: str,
        prefix: str,
        suffix: str = "",
    ) -> ArtifactRef:
        """Server-side copy of ``source`` (whose digest the caller measured) to ``prefix/<sha256><suffix>``.

        The bytes never travel through this process; ``etag`` pins the copy to the version that
        was hashed, so an object replaced meanwhile fails the copy instead of storing other bytes.
        """
        location = ObjectLocation(bucket, f"{prefix.rstrip('/')}/{sha256}{suffix}")
        recorded = self._recorded_digest(location)
        if recorded is None:
            self._client.copy_object(
                location.bucket,
                location.key,
                CopySource(source.bucket, source.key, match_etag=etag),
                metadata={DIGEST_METADATA: sha256},
                metadata_directive=REPLACE,
            )
        elif recorded != sha256:
            raise ObjectConflictError(
                f"{location.uri} already holds other content (sha256 {recorded}); objects are immutable"
            )
        return ArtifactRef(uri=location.uri, sha256=sha256, size_bytes=size)

    def get(self, ref: ArtifactRef) -> bytes:
        """The bytes of ``ref``, verified against the digest recorded in the reference."""
        return self.get_verified(self.locate(ref.uri), expected_sha256=ref.sha256)

    def get_verified(self, location: ObjectLocation, *, expected_sha256: str | None = None) -> bytes:
        """The bytes at ``location``, verified against ``expected_sha256`` or the digest stored with it."""
        data, recorded = self._read_with_digest(location)
        expected = expected_sha256 if expected_sha256 is not None else recorded
        if expected is None:
            raise IntegrityError(f"{location.uri} has no recorded digest; refusing to trust it")
        actual = sha256_hex(data)
        if actual != expected:
            raise IntegrityError(
                f"{location.uri} was modified after it was written: sha256 {actual}, expected {expected}"
            )
        return data

    def read(self, location: ObjectLocation) -> bytes:
        """The raw bytes at ``location``, for objects that arrive from outside (no digest yet)."""
        return self._fetch(location)

    def open(self, location: ObjectLocation) -> ObjectReader:
        """A seekable reader of the raw bytes at ``location`` (like ``read``, without holding them all)."""
        try:
            stat = self._client.stat_object(location.bucket, location.key)
        except S3Error as error:
            if error.code in _MISSING_CODES:
                raise ObjectNotFoundError(f"no object at {location.uri}") from error
            raise
        # Every range is asked of the version stat saw: an object replaced meanwhile fails the read
        # (412) instead of mixing the bytes of two files.
        pinned: DictType | None = {"If-Match": stat.etag} if stat.etag else None

        def fetch(offset: int, length: int) -> bytes:
            return self._fetch(location, offset=offset, length=length, headers=pinned)

        def stream(offset: int, piece: int) -> Iterator[bytes]:
            return self._stream(location, offset=offset, piece=piece, headers=pinned)

        return ObjectReader(fetch, size=stat.size or 0, etag=stat.etag, stream=stream)

    def exists(self, location: ObjectLocation) -> bool:
        """Whether an object is at ``location``."""
        return self._stat_headers(location) is not None

    def list_keys(self, *, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys under ``prefix`` in ``bucket``, recursively, sorted (only those after ``start_after``)."""
        objects = self._client.list_objects(bucket, prefix=prefix, recursive=True, start_after=start_after)
        return sorted(obj.object_name for obj in objects if obj.object_name is not None)

    def list_prefixes(self, *, bucket: str, prefix: str) -> list[str]:
        """The "folders" directly under ``prefix`` in ``bucket`` (each ending in ``/``), sorted."""
        objects = self._client.list_objects(bucket, prefix=prefix, recursive=False)
        return sorted(obj.object_name for obj in objects if obj.is_dir and obj.object_name is not None)

    def remove(self, location: ObjectLocation) -> None:
        """Delete the object at ``location`` (none there is fine): for derived copies, never for artifacts."""
        self._client.remove_object(location.bucket, location.key)

    def _recorded_digest(self, location: ObjectLocation) -> str | None:
        headers = self._stat_headers(location)
        if headers is None:
            return None
        return headers.get(_DIGEST_HEADER)

    def _fetch(
        self,
        location: ObjectLocation,
        *,
        offset: int = 0,
        length: int = 0,
        headers: DictType | None = None,
    ) -> bytes:
        """The object's bytes from ``offset``: ``length`` of them, or all the rest when it is 0."""
        return self._get(location, offset=offset, length=length, headers=headers)[0]

    def _stream(
        self, location: ObjectLocation, *, offset: int, piece: int, headers: DictType | None
    ) -> Iterator[bytes]:
        """The object's bytes from ``offset`` to its end, ``piece`` at a time, from one GET."""
        response = self._open_get(location, offset=offset, headers=headers)
        try:
            yield from response.stream(piece)
        finally:
            response.close()
            response.release_conn()

    def _read_with_digest(self, location: ObjectLocation) -> tuple[bytes, str | None]:
        """The bytes at ``location`` and the digest recorded with them, which its GET returns as a header."""
        data, headers = self._get(location)
        return data, headers.get(_DIGEST_HEADER)

    def _get(
        self,
        location: ObjectLocation,
        *,
        offset: int = 0,
        length: int = 0,
        headers: DictType | None = None,
    ) -> tuple[bytes, Mapping[str, str]]:
        """One GET: the bytes asked for and the response's headers."""
        response = self._open_get(location, offset=offset, length=length, headers=headers)
        try:
            return response.read(), response.headers
        finally:
            response.close()
            response.release_conn()

    def _open_get(
        self,
        location: ObjectLocation,
        *,
        offset: int = 0,
        length: int = 0,
        headers: DictType | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """A GET's response, for the caller to read and release; no object there is ObjectNotFoundError."""
        try:
            return self._client.get_object(
                location.bucket, location.key, offset=offset, length=length, request_headers=headers
            )
        except S3Error as error:
            if error.code in _MISSING_CODES:
                raise ObjectNotFoundError(f"no object at {location.uri}") from error
            raise

    def _stat_headers(self, location: ObjectLocation) -> dict[str, str] | None:
        try:
            stat = self._client.stat_object(location.bucket, location.key)
        except S3Error as error:
            if error.code in _MISSING_CODES:
                return None
            raise
        return {name.lower(): value for name, value in (stat.metadata or {}).items()}
