"""A client of the registry's dataset routes: list versions, check one out (verified), read the audit."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.clients.registry import ApiError
from shared.messaging import TransientError
from shared.storage import IntegrityError

DIGEST_HEADER = "X-Conveyor-Sha256"
CHECKOUT_HEADER = "X-Conveyor-Checkout-Id"


@dataclass(frozen=True)
class CheckedOut:
    """A dataset version written to a local file, and its audit entry."""

    path: Path
    dataset_version: str
    checkout_id: str
    size_bytes: int


class DatasetClient:
    """Governed access to a pipeline's datasets (every call needs a token)."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def versions(self, pipeline: str) -> list[dict[str, Any]]:
        """Every stored dataset version of ``pipeline``."""
        return list(self._json("GET", f"/v1/datasets/{pipeline}/versions"))

    def audit(self, pipeline: str, *, dataset_version: str | None = None) -> list[dict[str, Any]]:
        """Who checked out which version, when and why."""
        params = {"dataset_version": dataset_version} if dataset_version else None
        return list(self._json("GET", f"/v1/datasets/{pipeline}/audit", params=params))

    def checkout(
        self, pipeline: str, *, dataset_version: str | None, reason: str, output: Path | None = None
    ) -> CheckedOut:
        """Download one version to ``output`` (default: its own name, here); kept only if it verifies."""
        body = {"dataset_version": dataset_version, "reason": reason}
        try:
            with self._client.stream("POST", f"/v1/datasets/{pipeline}/checkout", json=body) as response:
                _raise_for(response)
                version = response.headers[DIGEST_HEADER]
                if dataset_version is not None and version != dataset_version:
                    raise IntegrityError(f"asked for {dataset_version}, the registry sent {version}")
                target = output or Path(_filename(response) or f"{pipeline}-{version[:12]}")
                size = _write_verified(response, target, expected=version)
                return CheckedOut(target, version, response.headers[CHECKOUT_HEADER], size)
        except httpx.TransportError as error:
            raise TransientError(f"registry unreachable at {self._client.base_url}: {error}") from error

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise TransientError(f"registry unreachable at {self._client.base_url}: {error}") from error
        _raise_for(response)
        return response.json()


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    if response.status_code >= 500:
        raise TransientError(f"registry answered {response.status_code}: {response.text[:500]}")
    detail = response.json().get("detail", response.text) if response.content else ""
    raise ApiError(response.status_code, str(detail))


def _write_verified(response: httpx.Response, target: Path, *, expected: str) -> int:
    """Stream into a temporary file beside ``target``; it becomes ``target`` only if its digest matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                file.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != expected:
            raise IntegrityError(f"the download hashes to {digest.hexdigest()}, not its version {expected}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return size


def _filename(response: httpx.Response) -> str | None:
    disposition = response.headers.get("Content-Disposition", "")
    name = disposition.partition('filename="')[2].rstrip('"')
    return Path(name).name or None
