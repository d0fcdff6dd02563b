"""The URI parser refuses every path form that peers' CVEs were built on."""

from __future__ import annotations

import pytest

from shared.uris import AllowedLocation, ObjectLocation, UnsafeUriError, parse_object_uri

ALLOWED = [AllowedLocation("conveyor-landing"), AllowedLocation("conveyor-artifacts", prefix="churn/")]


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://conveyor-landing/churn/2026-11-26.csv", "conveyor-landing", "churn/2026-11-26.csv"),
        ("s3://conveyor-landing/a.parquet", "conveyor-landing", "a.parquet"),
        ("s3://conveyor-artifacts/churn/models/x.pkl", "conveyor-artifacts", "churn/models/x.pkl"),
        ("s3://conveyor-landing/data..v2/file.csv", "conveyor-landing", "data..v2/file.csv"),
    ],
)
def test_accepts_keys_inside_allowed_locations(uri: str, bucket: str, key: str) -> None:
    location = parse_object_uri(uri, allowed=ALLOWED)
    assert location == ObjectLocation(bucket, key)
    assert location.uri == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("s3://conveyor-landing/../conveyor-artifacts/x", "'..'"),
        ("s3://conveyor-landing/churn/../../etc/passwd", "'..'"),
        ("s3://conveyor-landing/churn/..%2f..%2fsecret", "percent"),
        ("s3://conveyor-landing/%2e%2e/secret", "percent"),
        ("s3://conveyor-landing/churn/x.csv#/../../secret", "fragment"),
        ("s3://conveyor-landing/churn/x.csv?/../../secret", "query"),
        ("s3://conveyor-landing/churn\\..\\secret", "backslash"),
        ("s3://conveyor-landing//proc/self/root/etc/passwd", "absolute"),
        ("s3://conveyor-landing/./x.csv", "'.'"),
        ("s3://conveyor-landing/a//b.csv", "empty"),
        ("file:///etc/passwd", "scheme"),
        ("/etc/passwd", "scheme"),
        ("etc/passwd", "scheme"),
        ("http://169.254.169.254/latest/meta-data/", "scheme"),
        ("http://127.0.0.1:9000/conveyor-landing/x.csv", "scheme"),
        ("s3://other-bucket/x.csv", "outside"),
        ("s3://conveyor-artifacts/other-pipeline/model.pkl", "outside"),
        ("s3://conveyor-landing/", "no object"),
        ("s3:///x.csv", "bucket"),
        ("s3://Conveyor-Landing/x.csv", "bucket"),
        ("s3://conveyor-landing/x\x00.csv", "control"),
    ],
)
def test_refuses_unsafe_uris(uri: str, why: str) -> None:
    with pytest.raises(UnsafeUriError, match=why):
        parse_object_uri(uri, allowed=ALLOWED)


def test_nothing_allowed_refuses_everything() -> None:
    with pytest.raises(UnsafeUriError, match="nowhere"):
        parse_object_uri("s3://conveyor-landing/x.csv", allowed=[])
