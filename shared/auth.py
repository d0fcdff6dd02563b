"""Bearer tokens, roles and the audit trail of the write routes of Conveyor's HTTP APIs.

MLflow CVE-2023-6014 let anyone change the registry. Here every change needs a token whose role
allows it: no token (or an unknown one) → 401, a token without the role → 403. Roles:

- ``reader``: reads (which stay open without a token too);
- ``approver``: approves and rejects model versions;
- ``operator``: rollbacks, dead-letter replays, batch jobs;
- ``admin``: everything (the token ``conveyor up`` generates for this machine).

A pipeline's spec may also name a role of its own for one of its environments (``release``, say):
a token holding that role (or admin) may promote versions into it.

Tokens are looked up by their SHA-256 with constant-time comparisons over every known token, and
never logged: the audit trail names the user the token belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr, StringConstraints, TypeAdapter

Role = Literal["reader", "approver", "operator", "admin"]
ROLES: tuple[Role, ...] = ("reader", "approver", "operator", "admin")
# A role a token may hold: one of ROLES, or one a pipeline spec names for an environment.
RoleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
ADMIN: Role = "admin"

audit_log = logging.getLogger("conveyor.audit")


class _Grant(BaseModel):
    user: str
    role: RoleName


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this principal may do what ``role`` may (admin may do everything)."""
        return self.role in (role, ADMIN)


class RoleRefused(PermissionError):
    """A caller without a token, with an unknown one, or without the role an action needs."""

    def __init__(self, message: str, *, authenticated: bool) -> None:
        super().__init__(message)
        self.authenticated = authenticated


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenBook:
    """The tokens an API accepts, each naming a user and a role."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = [(_digest(token), principal) for token, principal in tokens.items()]

    @classmethod
    def from_secret(cls, secret: SecretStr) -> TokenBook:
        """Parse ``{"<token>": {"user": ..., "role": ...}}`` (CONVEYOR_API_TOKENS)."""
        grants = TypeAdapter(dict[str, _Grant]).validate_python(json.loads(secret.get_secret_value()))
        return cls({token: Principal(grant.user, grant.role) for token, grant in grants.items()})

    def principal(self, token: str) -> Principal | None:
        """The principal a token belongs to; every known token is compared, in constant time."""
        presented = _digest(token)
        found = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, presented):
                found = principal
        return found

    def check(self, token: str | None, *, role: str | None, action: str) -> Principal:
        """The caller, if its token allows ``role`` (any token when None); else RoleRefused (audited)."""
        principal = self.principal(token) if token else None
        if principal is None:
            audit(None, action=action, target="", outcome="refused: no valid token")
            reason = "a bearer token is required" if not token else "unknown token"
            raise RoleRefused(f"{reason} to {action}", authenticated=False)
        if role is not None and not principal.may(role):
            audit(principal, action=action, target="", outcome=f"refused: needs the {role} role")
            raise RoleRefused(
                f"user {principal.user!r} (role {principal.role!r}) lacks the {role!r} role to {action}",
                authenticated=True,
            )
        return principal

    def identify(
        self, credentials: HTTPAuthorizationCredentials | None, *, action: str = "read this"
    ) -> Principal:
        """The caller of any valid bearer token; otherwise 401."""
        return self.require(credentials, role=None, action=action)

    def require(
        self,
        credentials: HTTPAuthorizationCredentials | None,
        *,
        role: str | None,
        action: str = "change this",
    ) -> Principal:
        """The caller, if it holds ``role`` (any valid token when None); otherwise 401 or 403."""
        token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else None
        try:
            return self.check(token, role=role, action=action)
        except RoleRefused as refused:
            if refused.authenticated:
                raise HTTPException(status.HTTP_403_FORBIDDEN, str(refused)) from None
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, str(refused), headers={"WWW-Authenticate": "Bearer"}
            ) from None


def audit(principal: Principal | None, *, action: str, target: str, outcome: str, why: str = "") -> None:
    """One audit record: who, when, what, on what, why and how it ended (never the token)."""
    record = {
        "at": datetime.now(UTC).isoformat(),
        "user": principal.user if principal else None,
        "role": principal.role if principal else None,
        "action": action,
        "target": target,
        "why": why,
        "outcome": outcome,
    }
    audit_log.info("audit %s %s by %s: %s", action, target, record["user"], outcome, extra={"audit": record})


def credentials_first(tokens: TokenBook, *, role: str | None, action: str = "change this") -> type[APIRoute]:
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
                tokens.require(await bearer(request), role=role, action=action)
                return await handler(request)

            return authenticated

    return CredentialsFirst
