"""Liveness and readiness routes for the services that speak HTTP."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException


def add_health_routes(app: FastAPI, *, ready_means: str) -> None:
    """``/health/live`` always answers; ``/health/ready`` answers 200 once ``app.state.ready`` is set."""
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live")
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    async def ready() -> dict[str, str]:
        if not app.state.ready:
            raise HTTPException(503, "starting")
        return {"status": "ready"}

    ready.__doc__ = ready_means
    router.add_api_route("/ready", ready, methods=["GET"], responses={503: {}})
    app.include_router(router)
