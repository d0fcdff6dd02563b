"""Drift rules: how far each feature's distribution moved from the previous dataset version's profile."""

from __future__ import annotations

import pandas as pd

from services.ingest.rules.results import rule_result
from shared.events.envelope import RuleResult
from shared.pipeline_spec import PipelineSpec
from shared.profile import DataProfile, psi_by_feature


def check_drift(frame: pd.DataFrame, *, previous: DataProfile, spec: PipelineSpec) -> list[RuleResult]:
    """PSI of each feature against the previous dataset version's profile (warnings)."""
    limit = spec.validation.drift_psi_warning
    return [
        rule_result(
            rule="drift.psi",
            passed=psi <= limit,
            severity="warning",
            column=column,
            figure=psi,
            threshold=limit,
            message=f"PSI {psi:.3f} against the previous version",
        )
        for column, psi in psi_by_feature(previous, frame).items()
    ]
