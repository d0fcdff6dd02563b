"""The registry's HTTP API: open reads, authenticated decisions."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Depends() annotations
# that refer to closures inside create_router.

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.registry.api_models import (
    DecisionRequest,
    DeploymentRecord,
    GroupSummary,
    PromotionRequest,
    ReleaseRecord,
    VersionDetail,
    VersionSummary,
)
from services.registry.model_group import ModelGroup, TransitionError, UnknownEnvironmentError
from services.registry.registry import Registry
from shared.auth import Principal, TokenBook, audit, credentials_first
from shared.events import Event, VersionStatus

PipelinePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
VersionPath = Annotated[int, Path(ge=1)]
_bearer = HTTPBearer(auto_error=False)
DECIDE = "approve or reject a model version"


def create_router(
    registry: Registry, *, tokens: TokenBook, publish: Callable[[Event], Awaitable[None]]
) -> APIRouter:
    """Routes over ``registry``; decisions are published with ``publish``."""
    router = APIRouter(prefix="/v1")
    decisions = APIRouter(route_class=credentials_first(tokens, role="approver", action=DECIDE))

    async def group_of(pipeline: str) -> ModelGroup:
        try:
            return await registry.current(pipeline)
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None

    def approver(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return tokens.require(credentials, role="approver", action=DECIDE)

    @router.get("/groups", response_model=list[GroupSummary], tags=["read"])
    async def list_groups() -> list[GroupSummary]:
        """Every model group."""
        return [GroupSummary.of(group) for _, group in sorted((await registry.current_groups()).items())]

    @router.get("/groups/{pipeline}", response_model=GroupSummary, tags=["read"], responses={404: {}})
    async def get_group(pipeline: PipelinePath) -> GroupSummary:
        """One model group."""
        return GroupSummary.of(await group_of(pipeline))

    @router.get(
        "/groups/{pipeline}/versions", response_model=list[VersionSummary], tags=["read"], responses={404: {}}
    )
    async def list_versions(
        pipeline: PipelinePath, status_filter: Annotated[VersionStatus | None, Query(alias="status")] = None
    ) -> list[VersionSummary]:
        """The group's versions, oldest first, optionally only those with one status."""
        group = await group_of(pipeline)
        versions = sorted(group.versions.values(), key=lambda v: v.number)
        return [VersionSummary.of(group, v) for v in versions if status_filter in (None, v.status)]

    @router.get(
        "/groups/{pipeline}/versions/{version}",
        response_model=VersionDetail,
        tags=["read"],
        responses={404: {}},
    )
    async def get_version(pipeline: PipelinePath, version: VersionPath) -> VersionDetail:
        """One version with metrics, lineage, report links, audit trail and deployments."""
        group = await group_of(pipeline)
        if version not in group.versions:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{pipeline} has no version {version}")
        return VersionDetail.of(group, group.versions[version])

    @router.get(
        "/groups/{pipeline}/champion", response_model=VersionDetail, tags=["read"], responses={404: {}}
    )
    async def get_champion(pipeline: PipelinePath) -> VersionDetail:
        """The most recently approved version."""
        group = await group_of(pipeline)
        champion = group.champion()
        if champion is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{pipeline} has no approved version")
        return VersionDetail.of(group, champion)

    @router.get(
        "/groups/{pipeline}/history",
        response_model=list[DeploymentRecord],
        tags=["read"],
        responses={404: {}},
    )
    async def promotion_history(
        pipeline: PipelinePath,
        environment: Annotated[str | None, Query(max_length=200)] = None,
        at: Annotated[datetime | None, Query(description="only what was live at this time")] = None,
    ) -> list[DeploymentRecord]:
        """Which version was live in each environment, and when."""
        group = await group_of(pipeline)
        records = [d for d in group.deployments if environment in (None, d.environment)]
        if at is not None:
            if at.tzinfo is None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'at' needs a time zone")
            records = [d for d in records if d.since <= at and (d.until is None or at < d.until)]
        return [DeploymentRecord.of(d) for d in records]

    @router.get(
        "/groups/{pipeline}/releases",
        response_model=list[ReleaseRecord],
        tags=["read"],
        responses={404: {}},
    )
    async def release_history(
        pipeline: PipelinePath,
        environment: Annotated[str | None, Query(max_length=200)] = None,
        version: Annotated[int | None, Query(ge=1)] = None,
    ) -> list[ReleaseRecord]:
        """Every step of the group's gradual releases (shadow, canary, linear), oldest first."""
        group = await group_of(pipeline)
        return [
            ReleaseRecord.of(r)
            for r in group.releases
            if environment in (None, r.environment) and version in (None, r.version)
        ]

    async def decide(
        pipeline: str, version: int, request: DecisionRequest, principal: Principal, *, approve: bool
    ) -> VersionDetail:
        action, target = ("approve" if approve else "reject"), f"{pipeline} version {version}"
        await group_of(pipeline)
        try:
            decided, event = await registry.decide(
                pipeline, version, approve=approve, by=principal.user, comment=request.comment
            )
        except LookupError as error:
            audit(principal, action=action, target=target, why=request.comment, outcome=f"not found: {error}")
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except TransitionError as error:
            audit(principal, action=action, target=target, why=request.comment, outcome=f"conflict: {error}")
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        audit(principal, action=action, target=target, why=request.comment, outcome="done")
        await publish(event)
        return VersionDetail.of(registry.group(pipeline), decided)

    @decisions.post(
        "/groups/{pipeline}/versions/{version}/approve",
        response_model=VersionDetail,
        tags=["decide"],
        responses={400: {}, 401: {}, 403: {}, 404: {}, 409: {}},
    )
    async def approve(
        pipeline: PipelinePath,
        version: VersionPath,
        request: DecisionRequest,
        principal: Annotated[Principal, Depends(approver)],
    ) -> VersionDetail:
        """Approve a version pending manual approval (approver role)."""
        return await decide(pipeline, version, request, principal, approve=True)

    @decisions.post(
        "/groups/{pipeline}/versions/{version}/reject",
        response_model=VersionDetail,
        tags=["decide"],
        responses={400: {}, 401: {}, 403: {}, 404: {}, 409: {}},
    )
    async def reject(
        pipeline: PipelinePath,
        version: VersionPath,
        request: DecisionRequest,
        principal: Annotated[Principal, Depends(approver)],
    ) -> VersionDetail:
        """Reject a version pending manual approval (approver role)."""
        return await decide(pipeline, version, request, principal, approve=False)

    promotions = APIRouter(route_class=credentials_first(tokens, role=None))

    @promotions.post(
        "/groups/{pipeline}/versions/{version}/promote",
        response_model=VersionDetail,
        tags=["decide"],
        responses={400: {}, 401: {}, 403: {}, 404: {}, 409: {}},
    )
    async def promote(
        pipeline: PipelinePath,
        version: VersionPath,
        request: PromotionRequest,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> VersionDetail:
        """Let a version serve in the next environment (the role that environment names, or admin)."""
        principal = tokens.identify(credentials)
        await group_of(pipeline)
        role = registry.environment_role(pipeline, version, request.to)
        if role is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"{pipeline} has no version {version} bound for {request.to!r}"
            )
        if not principal.may(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"user {principal.user!r} lacks the {role!r} role that {request.to} needs",
            )
        try:
            promoted, event = await registry.promote(
                pipeline, version, to=request.to, by=principal.user, comment=request.comment
            )
        except (LookupError, UnknownEnvironmentError) as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except TransitionError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        await publish(event)
        return VersionDetail.of(registry.group(pipeline), promoted)

    router.include_router(decisions)
    router.include_router(promotions)
    return router
