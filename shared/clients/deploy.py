"""A client of the deploy service's HTTP API: where each pipeline is served, and rollbacks."""

from __future__ import annotations

from typing import Any

import httpx

from shared.clients.registry import ApiError
from shared.messaging import TransientError


class DeployClient:
    """Reads deployments and asks for rollbacks."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def deployments(self) -> list[dict[str, Any]]:
        """Every pipeline's endpoint and versions."""
        return list(self._request("GET", "/v1/deployments"))

    def deployment(self, pipeline: str) -> dict[str, Any]:
        """One pipeline's endpoint and versions."""
        return dict(self._request("GET", f"/v1/deployments/{pipeline}"))

    def rollback(self, pipeline: str, *, reason: str = "") -> dict[str, Any]:
        """Serve the previously approved version again (needs an operator token); ``reason`` is audited."""
        params = {"reason": reason} if reason else None
        return dict(self._request("POST", f"/v1/deployments/{pipeline}/rollback", params=params))

    def release(self, pipeline: str, action: str, *, reason: str = "") -> dict[str, Any]:
        """Pause, resume, promote or abort the pipeline's release (needs an operator token)."""
        params = {"reason": reason} if reason else None
        return dict(self._request("POST", f"/v1/deployments/{pipeline}/release/{action}", params=params))

    def _request(self, method: str, path: str, *, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._client.request(method, path, params=params)
        except httpx.TransportError as error:
            raise TransientError(f"deploy service unreachable at {self._client.base_url}: {error}") from error
        if response.status_code >= 500 and response.status_code != 503:
            raise TransientError(f"deploy service answered {response.status_code}: {response.text[:500]}")
        if response.status_code >= 400:
            detail = response.json().get("detail", response.text) if response.content else ""
            raise ApiError(response.status_code, str(detail))
        return response.json()
