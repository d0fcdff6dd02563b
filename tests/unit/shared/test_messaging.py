"""Error classification and retry timing of the safe consumer."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError
from minio.error import S3Error
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import MaxRetryError

from shared.messaging import PermanentError, RetryPolicy, TransientError, is_transient


def s3_error(code: str) -> S3Error:
    return S3Error(None, code, "message", "resource", "request-id", "host-id")  # type: ignore[arg-type]


def validation_error() -> ValidationError:
    class Model(BaseModel):
        x: int

    try:
        Model.model_validate({"x": "nope"})
    except ValidationError as error:
        return error
    raise AssertionError("unreachable")


def test_servers_briefly_away_are_transient() -> None:
    assert is_transient(TransientError("later"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(MaxRetryError(None, "/x"))  # type: ignore[arg-type]
    assert is_transient(KafkaConnectionError())
    assert is_transient(s3_error("ServiceUnavailable"))


def test_bad_input_and_bugs_are_permanent() -> None:
    assert not is_transient(PermanentError("bad"))
    assert not is_transient(validation_error())
    assert not is_transient(ValueError("bad"))
    assert not is_transient(KeyError("x"))
    assert not is_transient(s3_error("NoSuchKey"))
    assert not is_transient(s3_error("AccessDenied"))


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(attempts=6, initial_backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
