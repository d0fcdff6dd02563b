"""Schema rules: the columns the spec needs are there, numeric features hold numbers, and which
columns changed since the previous version."""

from __future__ import annotations

import pandas as pd

from services.ingest.rules.results import listed, rule_result
from shared.events.envelope import RuleResult
from shared.pipeline_spec import FeatureSet, PipelineSpec, is_numeric_column
from shared.profile import DataProfile, as_numbers


def check_required_columns(frame: pd.DataFrame, *, spec: PipelineSpec, features: FeatureSet) -> RuleResult:
    """The target, the features and the sensitive attribute are all present."""
    required = [spec.target, *features.columns]
    if spec.sensitive_attribute is not None:
        required.append(spec.sensitive_attribute)
    missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
    return rule_result(
        rule="schema.required_columns",
        passed=not missing,
        figure=len(missing),
        threshold=0,
        message=f"missing columns: {listed(missing)}" if missing else "all required present",
    )


def check_feature_types(frame: pd.DataFrame, *, features: FeatureSet) -> list[RuleResult]:
    """Numeric features hold numbers: text where a number belongs fails."""
    return [
        _numeric_type(frame[column], column=column) for column in features.numeric if column in frame.columns
    ]


def _numeric_type(values: pd.Series, *, column: str) -> RuleResult:
    present = values.dropna()
    ok = is_numeric_column(values) or present.empty
    bad = present[:0] if ok else present[as_numbers(present).isna()]
    if ok:
        message = "numeric"
    elif bad.empty:
        message = f"numbers stored as {values.dtype}; store them as numbers"
    else:
        message = (
            f"text where a number belongs: {len(bad)} of {len(present)} values are not numbers, "
            f"e.g. {str(bad.iloc[0])[:40]!r}"
        )
    return rule_result(
        rule="schema.feature_type",
        passed=ok,
        column=column,
        figure=len(bad) / len(present) if len(present) else 0.0,
        threshold=0.0,
        message=message,
    )


def check_columns_changed(
    frame: pd.DataFrame, *, previous: DataProfile, features: FeatureSet
) -> list[RuleResult]:
    """Columns added or removed since the previous dataset version (warnings)."""
    current = [str(c) for c in frame.columns]
    added = [c for c in current if c not in previous.columns]
    # Removed features are errors already (required columns); the rest only warn.
    removed = [c for c in previous.columns if c not in current and c not in features.columns]
    return [
        rule_result(
            rule="schema.columns_added",
            passed=not added,
            severity="warning",
            figure=len(added),
            threshold=0,
            message=f"new columns, not used as features unless declared: {listed(added)}"
            if added
            else "no new columns",
        ),
        rule_result(
            rule="schema.columns_removed",
            passed=not removed,
            severity="warning",
            figure=len(removed),
            threshold=0,
            message=f"columns gone since the previous version: {listed(removed)}"
            if removed
            else "no columns removed",
        ),
    ]
