"""Building a rule's result: within the event's limits, whatever the data held."""

from __future__ import annotations

from typing import Any

from shared.events.envelope import RuleResult


def rule_result(*, rule: str, column: str | None = None, message: str = "", **fields: Any) -> RuleResult:
    """A result whose column name and message fit the event's limits, whatever the data held."""
    return RuleResult(rule=rule, column=column[:200] if column else None, message=message[:4000], **fields)


def listed(items: list[str], *, shown: int = 20) -> str:
    """The first ``shown`` names, each cut to 100 characters, and how many more there are."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(str(item)[:100] for item in items[:shown]) + more
