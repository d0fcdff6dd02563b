"""Who may act in the console, and that a form really came from the console.

Reading is open, as the APIs are. An action (approve, reject, rollback, replay) needs the
approver token: entered once, kept in an HttpOnly, SameSite=Strict cookie that page scripts
cannot read and other sites cannot make the browser send. Every form also carries a CSRF token,
an HMAC of the browser's session cookie, so a form posted from anywhere else is refused.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from hashlib import sha256

from pydantic import SecretStr

from shared.auth import Principal, TokenBook

SESSION_COOKIE = "conveyor_session"
TOKEN_COOKIE = "conveyor_token"
COOKIE_FLAGS = {"httponly": True, "samesite": "strict", "path": "/"}


class Refused(Exception):
    """An action the console will not forward: the message says why, the status how (401/403)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Guard:
    """Checks CSRF tokens and approver tokens."""

    secret: bytes
    tokens: TokenBook

    @classmethod
    def create(cls, *, secret: SecretStr | None, tokens: SecretStr) -> Guard:
        """A guard keyed by the configured secret (or one drawn for this process)."""
        key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        return cls(secret=key, tokens=TokenBook.from_secret(tokens))

    @staticmethod
    def new_session() -> str:
        """A fresh, unguessable session id for a browser without one."""
        return secrets.token_urlsafe(32)

    def csrf_token(self, session: str) -> str:
        """The CSRF token of a session: what every form of that browser carries."""
        return hmac.new(self.secret, f"csrf:{session}".encode(), sha256).hexdigest()

    def check_form(self, *, session: str | None, token: str | None) -> None:
        """Refuse a form whose CSRF token does not belong to the browser's session."""
        if not session or not token or not hmac.compare_digest(self.csrf_token(session), token):
            raise Refused(
                403,
                "This form did not come from this console session (CSRF check failed): "
                "reload the page and try again.",
            )

    def allowed(self, token: str | None, *, role: str | None) -> Principal:
        """Who is behind ``token`` if it may act as ``role`` (any valid token when None), or why not.

        As the APIs decide: approving and rejecting need approver, rollback and replay operator,
        and admin may do everything.
        """
        if not token:
            raise Refused(401, "Sign in with the approver token first: actions need it.")
        principal = self.tokens.principal(token)
        if principal is None:
            raise Refused(401, "Unknown token: sign in again with a valid approver token.")
        if role is not None and not principal.may(role):
            raise Refused(403, f"User {principal.user!r} (role {principal.role!r}) lacks the {role} role.")
        return principal
