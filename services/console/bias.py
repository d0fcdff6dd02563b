"""A version's bias figures: its metrics per sensitive group, from the evaluation report in MinIO.

The evaluate service scores each candidate per group of the spec's ``sensitive_attribute`` and
keeps the figures in the report's JSON (``scores.by_group``, ``scores.group_gaps``); the registry
names that report with its digest. Reports never change, so what was read once is kept by digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.storage import ArtifactStore
from shared.uris import AllowedLocation

_KEPT = 512  # parsed reports kept; each is a few groups of a few numbers


@dataclass(frozen=True)
class GroupRow:
    """One sensitive group's test rows and metrics."""

    group: str
    rows: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class BiasFigures:
    """Metrics per group of one attribute, and per metric the highest group value minus the lowest."""

    attribute: str
    metrics: list[str]
    groups: list[GroupRow]
    gaps: dict[str, float]


def bias_figures(report: dict[str, Any]) -> BiasFigures | None:
    """The figures in an evaluation report's JSON; none when its spec named no sensitive attribute."""
    scores = report.get("scores") or {}
    attribute, by_group = scores.get("sensitive_attribute"), scores.get("by_group") or {}
    if not attribute or not by_group:
        return None
    groups = [
        GroupRow(str(name), int(found["rows"]), {k: float(v) for k, v in found["metrics"].items()})
        for name, found in sorted(by_group.items())
    ]
    metrics = sorted({metric for row in groups for metric in row.metrics})
    gaps = {k: float(v) for k, v in (scores.get("group_gaps") or {}).items()}
    return BiasFigures(str(attribute), metrics, groups, gaps)


class BiasReader:
    """Reads versions' bias figures from their evaluation reports, each report once."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._allowed = [AllowedLocation(bucket)]
        self._kept: dict[str, BiasFigures | None] = {}

    def of(self, version: dict[str, Any]) -> tuple[BiasFigures | None, str | None]:
        """A registry version's bias figures, or why they cannot be shown (blocking: reads MinIO)."""
        report = version.get("report")
        if not report:
            return None, "this version has no evaluation report"
        digest = report["sha256"]
        if digest not in self._kept:
            try:
                location = self._store.locate(report["uri"], allowed=self._allowed)
                body = self._store.get_verified(location, expected_sha256=digest)
                found = bias_figures(json.loads(body))
            except Exception as error:  # the page shows the rest of the version
                return None, f"evaluation report not readable: {type(error).__name__}"
            if len(self._kept) >= _KEPT:
                self._kept.pop(next(iter(self._kept)))
            self._kept[digest] = found
        found = self._kept[digest]
        return found, None if found else "no sensitive attribute in this version's spec"
