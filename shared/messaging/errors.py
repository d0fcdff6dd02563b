"""Which failures are worth retrying: the rest go straight to the dead-letter topic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from minio.error import S3Error, ServerError
from urllib3.exceptions import HTTPError as Urllib3HTTPError


class PermanentError(Exception):
    """Processing this message can never succeed; retrying would only repeat the failure."""


class RefusedMessage(PermanentError):
    """Refused on purpose: ``outputs`` (a failure event) are published, then the message dead-lettered."""

    def __init__(self, message: str, *, outputs: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.outputs = tuple(outputs)


class TransientError(Exception):
    """Processing failed for a reason that may pass (a server briefly away)."""


# S3 error codes that a healthy MinIO answers while starting, healing or shedding load.
_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "XMinioServerNotInitialized",
        "XMinioStorageFull",
    }
)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    Urllib3HTTPError,
    ServerError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may go away if the same work is tried again later."""
    if isinstance(error, PermanentError):
        return False
    if isinstance(error, S3Error):
        return error.code in _TRANSIENT_S3_CODES
    return isinstance(error, _TRANSIENT_TYPES)
