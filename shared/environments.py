"""The environments of a pipeline, in promotion order, each with who may let a version in.

Approving a version makes it eligible for the first environment; reaching each later one is a
promotion of its own, decided by a person holding that environment's role (``manual``) or taken
by the registry once the version serves in the environment before it (``auto``). A spec that
names none has one environment, ``production``, entered under the spec's ``approval`` policy,
which is how every pipeline behaved before environments existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from shared.events.envelope import EnvironmentName, Frozen, Name

DEFAULT_ENVIRONMENT = "production"
DEFAULT_ROLE = "approver"
Policy = Literal["auto", "manual"]


class EnvironmentSpec(Frozen):
    """One environment a version may reach, and how it gets there."""

    name: EnvironmentName
    approval: Policy = Field(
        default="manual",
        description="auto: entered without a person (the first on passing gates, a later one once "
        "the version serves in the environment before); manual: a person with `role` decides.",
    )
    role: Name = Field(
        default=DEFAULT_ROLE, description="The token role that may decide (an admin token always may)."
    )


def fill_environments(data: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's fields with ``environments`` and ``approval`` filled in from each other.

    Without environments the spec has one, ``production``, under its approval policy; with them
    and no approval, the first environment's policy is the approval policy.
    """
    filled = dict(data)
    environments = filled.get("environments")
    if environments is None:
        filled["environments"] = [{"name": DEFAULT_ENVIRONMENT, "approval": filled.get("approval", "manual")}]
    elif isinstance(environments, list | tuple) and environments and isinstance(environments[0], Mapping):
        first = dict(environments[0])
        if "approval" in first:
            filled.setdefault("approval", first["approval"])
        elif "approval" in filled:
            first["approval"] = filled["approval"]
            filled["environments"] = [first, *environments[1:]]
    return filled


def environment_problems(environments: tuple[EnvironmentSpec, ...], *, approval: Policy) -> list[str]:
    """What is wrong with a spec's environments, one line each."""
    if not environments:
        return ["environments: name at least one environment"]
    problems: list[str] = []
    names = [environment.name for environment in environments]
    if duplicated := sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"environments: {duplicated} named more than once")
    if environments[0].approval != approval:
        problems.append(
            f"approval: {approval!r} differs from environments.0.approval "
            f"{environments[0].approval!r}; keep one"
        )
    return problems


def next_environment(environments: tuple[EnvironmentSpec, ...], current: str) -> EnvironmentSpec | None:
    """The environment after ``current`` (None: ``current`` is the last or not one of them)."""
    names = [environment.name for environment in environments]
    if current not in names or names.index(current) + 1 == len(names):
        return None
    return environments[names.index(current) + 1]


def find_environment(environments: tuple[EnvironmentSpec, ...], name: str) -> EnvironmentSpec | None:
    """The environment called ``name``."""
    return next((environment for environment in environments if environment.name == name), None)
