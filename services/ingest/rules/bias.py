"""Bias rules: how unbalanced the classes are, and how far the positive rate differs across the
sensitive attribute's groups."""

from __future__ import annotations

import pandas as pd

from services.ingest.rules.results import listed, rule_result
from shared.events.envelope import RuleResult
from shared.pipeline_spec import PipelineSpec
from shared.profile import as_categories


def check_imbalance(frame: pd.DataFrame, *, spec: PipelineSpec) -> RuleResult:
    """Rows of the most frequent class per row of the rarest one."""
    counts = frame[spec.target].value_counts(dropna=True)
    limit = spec.validation.max_class_imbalance
    ratio = float(counts.max() / counts.min()) if len(counts) >= 2 else None
    return rule_result(
        rule="bias.class_imbalance",
        passed=ratio is None or ratio <= limit,
        column=spec.target,
        figure=ratio,
        threshold=limit,
        message="fewer than two classes: not measured"
        if ratio is None
        else f"majority {counts.idxmax()!s} ({counts.max()} rows) / minority "
        f"{counts.idxmin()!s} ({counts.min()} rows) = {ratio:.2f}",
    )


def check_label_bias(frame: pd.DataFrame, *, spec: PipelineSpec) -> RuleResult:
    """Spread of positive-label rates across the sensitive attribute's groups."""
    attribute = str(spec.sensitive_attribute)
    limit = spec.validation.max_bias_difference
    labelled = frame[frame[spec.target].notna()]
    positive = positive_label(labelled[spec.target], spec=spec)
    rule = "bias.positive_rate_difference"
    if positive is None:
        return rule_result(
            rule=rule,
            passed=True,
            column=attribute,
            threshold=limit,
            message="no positive label: set positive_label for a multiclass target",
        )
    is_positive = as_categories(labelled[spec.target]) == positive
    if not is_positive.any():
        return rule_result(
            rule=rule,
            passed=False,
            column=attribute,
            threshold=limit,
            message=f"the positive label {positive!r} does not occur in {spec.target!r}",
        )
    groups = as_categories(labelled[attribute])
    sizes = groups.value_counts()
    kept = sizes[sizes >= spec.validation.min_group_rows].index
    rates = is_positive[groups.isin(kept)].groupby(groups[groups.isin(kept)]).mean()
    if len(rates) < 2:
        return rule_result(
            rule=rule,
            passed=True,
            column=attribute,
            threshold=limit,
            message=f"fewer than two groups with {spec.validation.min_group_rows}+ rows",
        )
    spread = float(rates.max() - rates.min())
    shown = listed([f"{group}: {rate:.1%}" for group, rate in rates.sort_index().items()])
    return rule_result(
        rule=rule,
        passed=spread <= limit,
        column=attribute,
        figure=spread,
        threshold=limit,
        message=f"rate of {positive!r} by group: {shown}",
    )


def positive_label(target: pd.Series, *, spec: PipelineSpec) -> str | None:
    """The positive class as a category string: declared, else the larger of two labels."""
    if spec.positive_label is not None:
        return str(as_categories(pd.Series([spec.positive_label])).iloc[0])
    labels = list(target.dropna().unique())
    if len(labels) != 2:
        return None
    # The larger label, as scikit-learn orders classes (so 1 over 0, "yes" over "no").
    try:
        larger = max(labels)
    except TypeError:
        larger = max(labels, key=str)
    return str(as_categories(pd.Series([larger], dtype=object)).iloc[0])
