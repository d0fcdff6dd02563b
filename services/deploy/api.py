"""The deploy service's HTTP API: open reads, a rollback for operators (audited).

No ``from __future__ import annotations`` here: FastAPI must see the route annotations as
objects, since the approver dependency is local to ``create_router``.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.deploy.deployments import Deployer, DeploymentView, NothingToRollBack
from services.deploy.records import ReleaseState
from services.deploy.releases import Action, NoRelease, ReleaseRefused
from services.deploy.workers import ServingError
from shared.auth import Principal, TokenBook, audit
from shared.events import Event

PipelinePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
_bearer = HTTPBearer(auto_error=False)
ROLLBACK = "roll a deployment back"
STEER = "steer a release"


class Deployment(BaseModel):
    """A pipeline's endpoint and the versions behind it."""

    pipeline: str
    endpoint_url: str
    environment: str
    active_version: int | None
    serving_version: int | None
    previous_version: int | None
    versions: list[int]
    release: ReleaseState | None = None

    @classmethod
    def of(cls, view: DeploymentView, *, environment: str) -> "Deployment":
        """The API shape of one deployment."""
        return cls(
            pipeline=view.pipeline,
            endpoint_url=view.endpoint_url,
            environment=environment,
            active_version=view.active_version,
            serving_version=view.serving_version,
            previous_version=view.previous_version,
            versions=view.versions,
            release=view.release,
        )


class ReleaseOutcome(BaseModel):
    """What an operator's action on a release did: the events it published."""

    pipeline: str
    action: str
    by: str
    events: list[str]
    release: ReleaseState | None


class Rollback(BaseModel):
    """The outcome of a rollback."""

    pipeline: str
    version: int
    endpoint_url: str
    rolled_back_by: str


def create_router(
    deployer: Deployer, *, tokens: TokenBook, environment: str, publish: Callable[[Event], Awaitable[None]]
) -> APIRouter:
    """Routes over ``deployer``; the ModelDeployed of a rollback is published with ``publish``."""
    router = APIRouter(prefix="/v1")

    def operator(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        return tokens.require(credentials, role="operator", action=ROLLBACK)

    def steerer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        return tokens.require(credentials, role="operator", action=STEER)

    def find(pipeline: str) -> DeploymentView:
        for view in deployer.views():
            if view.pipeline == pipeline:
                return view
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{pipeline} has no deployment")

    @router.get("/deployments", response_model=list[Deployment], tags=["read"])
    async def list_deployments() -> list[Deployment]:
        """Every pipeline's endpoint and versions."""
        return [Deployment.of(view, environment=environment) for view in deployer.views()]

    @router.get("/deployments/{pipeline}", response_model=Deployment, tags=["read"], responses={404: {}})
    async def get_deployment(pipeline: PipelinePath) -> Deployment:
        """One pipeline's endpoint and versions."""
        return Deployment.of(find(pipeline), environment=environment)

    @router.get("/shared-workers", tags=["read"])
    async def shared_workers() -> list[dict[str, Any]]:
        """Each shared worker's assigned pipelines (and versions), loaded models, loads and unloads."""
        return await deployer.shared.status()

    @router.post(
        "/deployments/{pipeline}/rollback",
        response_model=Rollback,
        tags=["change"],
        responses={401: {}, 403: {}, 404: {}, 409: {}, 503: {}},
    )
    async def rollback(
        pipeline: PipelinePath,
        principal: Annotated[Principal, Depends(operator)],
        reason: Annotated[str, Query(max_length=1000, description="why, for the audit trail")] = "",
    ) -> Rollback:
        """Serve the previously approved version again, without a failed request (operator role)."""
        try:
            find(pipeline)
            event = await deployer.rollback(pipeline)
        except HTTPException as error:
            audit(principal, action="rollback", target=pipeline, why=reason, outcome=str(error.detail))
            raise
        except NothingToRollBack as error:
            audit(principal, action="rollback", target=pipeline, why=reason, outcome=f"conflict: {error}")
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        except ServingError as error:
            audit(principal, action="rollback", target=pipeline, why=reason, outcome=f"failed: {error}")
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
        audit(principal, action="rollback", target=pipeline, why=reason, outcome=f"serves {event.version}")
        await publish(event)
        return Rollback(
            pipeline=pipeline,
            version=event.version,
            endpoint_url=event.endpoint_url,
            rolled_back_by=principal.user,
        )

    @router.post(
        "/deployments/{pipeline}/release/{action}",
        response_model=ReleaseOutcome,
        tags=["change"],
        responses={401: {}, 403: {}, 404: {}, 409: {}, 503: {}},
    )
    async def steer_release(
        pipeline: PipelinePath,
        action: Action,
        principal: Annotated[Principal, Depends(steerer)],
        reason: Annotated[str, Query(max_length=1000, description="why, for the audit trail")] = "",
    ) -> ReleaseOutcome:
        """Pause, resume, promote or abort the pipeline's release in progress (operator role)."""

        def audited(outcome: str) -> None:
            audit(principal, action=f"release {action}", target=pipeline, why=reason, outcome=outcome)

        try:
            events = await deployer.releases.act(pipeline, action, by=principal.user, reason=reason)
        except NoRelease as error:
            audited(f"none: {error}")
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except ReleaseRefused as error:
            audited(f"conflict: {error}")
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        except ServingError as error:
            audited(f"failed: {error}")
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
        audited("done")
        for event in events:
            await publish(event)
        record = deployer.record(pipeline)
        return ReleaseOutcome(
            pipeline=pipeline,
            action=action,
            by=principal.user,
            events=[type(event).__name__ for event in events],
            release=record.release if record is not None else None,
        )

    return router
