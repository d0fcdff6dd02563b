"""Bearer-token authentication for the write routes of Conveyor's HTTP APIs (reading stays open).

MLflow CVE-2023-6014 let anyone change the registry; here approving or rejecting needs a
token with the approver role: no token → 401, a token without the role → 403.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr, StringConstraints, TypeAdapter

Role = Literal["approver", "viewer"]
# A role a pipeline spec names for one of its environments (e.g. "production"): tokens may hold it.
RoleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
ADMIN = "admin"  # may take every decision, whatever role an environment names


class _Grant(BaseModel):
    user: str
    role: RoleName


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this caller may take a decision reserved to ``role``."""
        return self.role in (role, ADMIN)


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
        principal = self.identify(credentials)
        if principal.role != role:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"user {principal.user!r} lacks the {role!r} role")
        return principal

    def identify(self, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        """The caller of a valid bearer token, whatever its role; otherwise 401."""
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
        return principal


def credentials_first(tokens: TokenBook, *, role: Role | None) -> type[APIRoute]:
    """A route class that checks the bearer token before the request body is read.

    FastAPI parses a body before it runs dependencies, so a caller without credentials who sends
    a malformed body would be told about the body (400/422); with this class it gets its 401
    whatever it sends, and no body of an unauthenticated caller is parsed. With no ``role``, any
    valid token passes (the route checks the role it needs once it knows it).
    """
    bearer = HTTPBearer(auto_error=False)

    class CredentialsFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def authenticated(request: Request) -> Response:
                credentials = await bearer(request)
                if role is None:
                    tokens.identify(credentials)
                else:
                    tokens.require(credentials, role=role)
                return await handler(request)

            return authenticated

    return CredentialsFirst
