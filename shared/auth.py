"""Bearer-token authentication for the write routes of Conveyor's HTTP APIs (reading stays open).

MLflow CVE-2023-6014 let anyone change the registry; here approving or rejecting needs a
token with the approver role: no token → 401, a token without the role → 403.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr, TypeAdapter

Role = Literal["approver", "viewer"]


class _Grant(BaseModel):
    user: str
    role: Role


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user: str
    role: Role


class TokenBook:
    """The tokens the registry accepts, each naming a user and a role."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = tokens

    @classmethod
    def from_secret(cls, secret: SecretStr) -> TokenBook:
        """Parse ``{"<token>": {"user": ..., "role": ...}}`` from CONVEYOR_REGISTRY_TOKENS."""
        grants = TypeAdapter(dict[str, _Grant]).validate_python(json.loads(secret.get_secret_value()))
        return cls({token: Principal(grant.user, grant.role) for token, grant in grants.items()})

    def principal(self, token: str) -> Principal | None:
        """The principal a token belongs to, compared in constant time."""
        for known, principal in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return principal
        return None

    def require(self, credentials: HTTPAuthorizationCredentials | None, *, role: Role) -> Principal:
        """The caller, if it holds ``role``; otherwise the right HTTP error."""
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required to change a model version",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = self.principal(credentials.credentials)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"}
            )
        if principal.role != role:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"user {principal.user!r} lacks the {role!r} role")
        return principal


def credentials_first(tokens: TokenBook, *, role: Role) -> type[APIRoute]:
    """A route class that checks the bearer token before the request body is read.

    FastAPI parses a body before it runs dependencies, so a caller without credentials who sends
    a malformed body would be told about the body (400/422); with this class it gets its 401
    whatever it sends, and no body of an unauthenticated caller is parsed.
    """
    bearer = HTTPBearer(auto_error=False)

    class CredentialsFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def authenticated(request: Request) -> Response:
                tokens.require(await bearer(request), role=role)
                return await handler(request)

            return authenticated

    return CredentialsFirst
