"""Parse object-store URIs and refuse any that could reach outside the configured buckets.

Model registries and servers in this field have shipped path-traversal CVEs (MLflow
CVE-2023-1177, CVE-2023-6909, CVE-2024-1483, CVE-2023-6977) and server-side requests to
internal addresses (BentoML CVE-2025-54381). The rules here are deliberately strict: a key
that needs an escape, a query or a fragment is refused rather than interpreted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SCHEME = "s3://"
_FORBIDDEN_CHARACTERS = {"%": "percent-encoding", "?": "a query", "#": "a fragment", "\\": "a backslash"}
_BUCKET_ALPHABET = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


class UnsafeUriError(ValueError):
    """A URI that is malformed or points outside the allowed locations."""


@dataclass(frozen=True)
class ObjectLocation:
    """A bucket and key inside it."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """The canonical ``s3://bucket/key`` form."""
        return f"{SCHEME}{self.bucket}/{self.key}"


@dataclass(frozen=True)
class AllowedLocation:
    """A bucket, optionally narrowed to a key prefix, that URIs may point into."""

    bucket: str
    prefix: str = ""


def parse_object_uri(uri: str, *, allowed: Iterable[AllowedLocation]) -> ObjectLocation:
    """Return the location ``uri`` names, or raise ``UnsafeUriError`` saying why it is refused."""
    if not uri.startswith(SCHEME):
        scheme = uri.split(":", 1)[0] if ":" in uri else "none"
        raise UnsafeUriError(f"only {SCHEME} URIs are accepted, not scheme {scheme!r}: {uri!r}")
    for character, what in _FORBIDDEN_CHARACTERS.items():
        if character in uri:
            raise UnsafeUriError(f"URI contains {what} ({character!r}), which is not allowed: {uri!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise UnsafeUriError(f"URI contains control characters: {uri!r}")

    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket or set(bucket) - _BUCKET_ALPHABET:
        raise UnsafeUriError(f"URI has no valid bucket name: {uri!r}")
    if not key:
        raise UnsafeUriError(f"URI names no object: {uri!r}")
    if key.startswith("/"):
        raise UnsafeUriError(f"URI key is an absolute path: {uri!r}")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise UnsafeUriError(f"URI key has an empty, '.' or '..' segment: {uri!r}")

    allowed = list(allowed)
    for location in allowed:
        if bucket == location.bucket and key.startswith(location.prefix):
            return ObjectLocation(bucket=bucket, key=key)
    places = ", ".join(f"{SCHEME}{a.bucket}/{a.prefix}" for a in allowed) or "nowhere"
    raise UnsafeUriError(f"URI {uri!r} is outside the allowed locations ({places})")


_SEGMENT_ALPHABET = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def safe_segment(value: str, *, what: str) -> str:
    """``value`` if it can stand as one key segment (no separators, no '.' or '..'), else raise."""
    if not value or value in (".", "..") or len(value) > 200 or set(value) - _SEGMENT_ALPHABET:
        raise UnsafeUriError(f"{what} {value!r} cannot be used in an object key")
    return value
