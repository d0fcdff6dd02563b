"""A client of the registry's HTTP API: what evaluate, the CLI and users' code ask of it."""

from __future__ import annotations

from typing import Any

import httpx

from shared.events import ArtifactRef
from shared.events.envelope import Frozen
from shared.messaging import TransientError


class ApiError(Exception):
    """A Conveyor HTTP API refused a request; the message carries its reason."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class Champion(Frozen):
    """The approved version a challenger is compared with."""

    version: int
    run_id: str
    model: ArtifactRef
    metrics: dict[str, float]


class RegistryClient:
    """Reads and decisions over the registry's HTTP API."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def champion(self, pipeline: str) -> Champion | None:
        """The pipeline's most recently approved version, or None when there is none."""
        response = self._request("GET", f"/v1/groups/{pipeline}/champion", missing_ok=True)
        if response is None:
            return None
        body = response.json()
        return Champion(
            version=body["version"], run_id=body["run_id"], model=body["model"], metrics=body["metrics"]
        )

    def groups(self) -> list[dict[str, Any]]:
        """Every model group."""
        return list(self._get_json("/v1/groups"))

    def versions(self, pipeline: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """The versions of a group, optionally with one status."""
        params = {"status": status} if status else None
        return list(self._get_json(f"/v1/groups/{pipeline}/versions", params=params))

    def version(self, pipeline: str, version: int) -> dict[str, Any]:
        """One version in full."""
        return dict(self._get_json(f"/v1/groups/{pipeline}/versions/{version}"))

    def history(
        self, pipeline: str, *, environment: str | None = None, at: str | None = None
    ) -> list[dict[str, Any]]:
        """The promotion history of a group (only what was live at time ``at``, ISO 8601, when given)."""
        params = {name: value for name, value in (("environment", environment), ("at", at)) if value}
        return list(self._get_json(f"/v1/groups/{pipeline}/history", params=params or None))

    def decide(self, pipeline: str, version: int, *, approve: bool, comment: str = "") -> dict[str, Any]:
        """Approve or reject a pending version (needs an approver token)."""
        action = "approve" if approve else "reject"
        response = self._request(
            "POST", f"/v1/groups/{pipeline}/versions/{version}/{action}", json={"comment": comment}
        )
        assert response is not None
        return dict(response.json())

    def promote(self, pipeline: str, version: int, *, to: str, comment: str = "") -> dict[str, Any]:
        """Promote a version to the next environment (needs a token with that environment's role)."""
        response = self._request(
            "POST", f"/v1/groups/{pipeline}/versions/{version}/promote", json={"to": to, "comment": comment}
        )
        assert response is not None
        return dict(response.json())

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _get_json(self, path: str, *, params: dict[str, str] | None = None) -> Any:
        response = self._request("GET", path, params=params)
        assert response is not None
        return response.json()

    def _request(
        self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise TransientError(f"registry unreachable at {self._client.base_url}: {error}") from error
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 500:
            raise TransientError(f"registry answered {response.status_code}: {response.text[:500]}")
        if response.status_code >= 400:
            detail = response.json().get("detail", response.text) if response.content else ""
            raise ApiError(response.status_code, str(detail))
        return response
