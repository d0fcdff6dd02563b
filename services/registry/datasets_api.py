"""The registry's dataset routes: list, check out (audited) and audit a pipeline's dataset versions.

Unlike model reads these need a token, any valid one (reading a dataset is reading the data
itself): the caller's identity is what the audit records.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations.

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from services.registry.datasets import Checkout, DatasetCatalog, DatasetVersion
from shared.auth import Principal, TokenBook, credentials_first

PipelinePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
DIGEST_HEADER = "X-Conveyor-Sha256"
CHECKOUT_HEADER = "X-Conveyor-Checkout-Id"
_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")


class CheckoutRequest(BaseModel):
    """Which version to take (the latest accepted one when left out), and why."""

    dataset_version: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    reason: str = Field(min_length=1, max_length=4000, description="Recorded in the audit.")


def create_dataset_router(catalog: DatasetCatalog, *, tokens: TokenBook) -> APIRouter:
    """Routes over ``catalog``; every one needs a valid bearer token."""
    router = APIRouter(
        prefix="/v1/datasets", route_class=credentials_first(tokens, role=None), tags=["datasets"]
    )

    def reader(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        return tokens.identify(credentials)

    async def found(function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a thread; a LookupError is a 404."""
        try:
            return await asyncio.to_thread(function, *args)
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None

    @router.get("/{pipeline}/versions", response_model=list[DatasetVersion], responses={401: {}, 404: {}})
    async def list_versions(
        pipeline: PipelinePath, _: Annotated[Principal, Depends(reader)]
    ) -> list[DatasetVersion]:
        """Every stored dataset version of the pipeline."""
        return await found(catalog.versions, pipeline)

    @router.post(
        "/{pipeline}/checkout",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, 401: {}, 404: {}, 422: {}},
    )
    async def checkout(
        pipeline: PipelinePath, request: CheckoutRequest, principal: Annotated[Principal, Depends(reader)]
    ) -> StreamingResponse:
        """The exact bytes of one dataset version, recorded in the audit before they are sent."""
        version = await found(catalog.resolve, pipeline, request.dataset_version)
        entry = await asyncio.to_thread(
            catalog.record,
            version,
            pipeline=pipeline,
            user=principal.user,
            role=principal.role,
            reason=request.reason,
        )
        filename = f"{pipeline}-{version.dataset_version[:12]}.{version.format or 'bin'}"
        return StreamingResponse(
            catalog.stream(version),  # a plain iterator: Starlette reads it in a worker thread
            media_type="application/octet-stream",
            headers={
                DIGEST_HEADER: version.dataset_version,
                CHECKOUT_HEADER: str(entry.checkout_id),
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    @router.get("/{pipeline}/audit", response_model=list[Checkout], responses={401: {}})
    async def audit(
        pipeline: PipelinePath,
        _: Annotated[Principal, Depends(reader)],
        dataset_version: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    ) -> list[Checkout]:
        """Every checkout of the pipeline's datasets (of one version), oldest first."""
        return await asyncio.to_thread(catalog.audit, pipeline, dataset_version=dataset_version)

    return router
