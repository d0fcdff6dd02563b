"""Roles: reader, approver, operator, admin; unknown or missing tokens refused; audits name no token."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from shared.auth import ROLES, RoleRefused, TokenBook

BOOK = TokenBook.from_secret(
    SecretStr(json.dumps({f"{role}-token": {"user": f"{role}-user", "role": role} for role in ROLES}))
)
ALLOWED = {
    "reader": {"reader", "admin"},
    "approver": {"approver", "admin"},
    "operator": {"operator", "admin"},
    "admin": {"admin"},
}


@pytest.mark.parametrize("needed", ROLES)
@pytest.mark.parametrize("holder", ROLES)
def test_each_role_may_do_what_it_is_for(needed: str, holder: str) -> None:
    if holder in ALLOWED[needed]:
        assert BOOK.check(f"{holder}-token", role=needed, action="act").user == f"{holder}-user"  # type: ignore[arg-type]
    else:
        with pytest.raises(RoleRefused) as refused:
            BOOK.check(f"{holder}-token", role=needed, action="act")  # type: ignore[arg-type]
        assert refused.value.authenticated


@pytest.mark.parametrize("token", [None, "", "nope", "admin-token ", "ADMIN-TOKEN"])
def test_missing_or_unknown_tokens_are_unauthenticated(token: str | None) -> None:
    with pytest.raises(RoleRefused) as refused:
        BOOK.check(token, role="reader", action="act")
    assert not refused.value.authenticated


def test_the_audit_trail_names_the_user_never_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.audit")
    with pytest.raises(RoleRefused):
        BOOK.check("approver-token", role="operator", action="roll back")
    with pytest.raises(RoleRefused):
        BOOK.check("guess-token", role="operator", action="roll back")
    audits = [record.audit for record in caplog.records]  # type: ignore[attr-defined]
    assert [a["user"] for a in audits] == ["approver-user", None]
    assert all(a["action"] == "roll back" and a["at"] and a["outcome"].startswith("refused") for a in audits)
    assert "approver-token" not in caplog.text and "guess-token" not in caplog.text
