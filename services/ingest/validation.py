"""Dataset validation: named rules over a dataset, each with the figure it measured.

Errors reject the dataset; warnings travel with the accepted dataset. Every rule that ran is
returned, passed or not, so the report shows the figures of the good news as well.

Columns against the previous version's profile: a removed column the model uses is an error
(the required-columns rule), any other removed column and every added column is a warning;
added columns do not become features once a profile exists (see ``resolve_features``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, Literal

import numpy as np
import pandas as pd

from services.ingest.reading import DatasetReadError, decode
from services.ingest.row_hashes import row_hashes
from shared.events.envelope import RuleResult
from shared.pipeline_spec import FeatureSet, PipelineSpec, is_numeric_column, resolve_features
from shared.profile import DataProfile, as_categories, as_numbers, psi_by_feature


def read_dataset(data: bytes | Callable[[], BinaryIO], *, fmt: Literal["csv", "parquet"]) -> pd.DataFrame:
    """Parse CSV or Parquet (bytes, or a function opening a stream) into a frame; refuse empty files."""
    if fmt not in ("csv", "parquet"):
        raise DatasetReadError(f"unknown format {fmt!r}: csv or parquet")
    if isinstance(data, bytes) and (not data or data.isspace()):
        raise DatasetReadError("the file is empty")
    frame = decode(data if callable(data) else lambda: data, fmt=fmt)
    if frame.empty:
        raise DatasetReadError(f"the {fmt} file has no data rows")
    return frame


def validate_dataset(
    frame: pd.DataFrame,
    *,
    spec: PipelineSpec,
    previous_profile: DataProfile | None = None,
    hashes: np.ndarray | None = None,
) -> list[RuleResult]:
    """Run every rule on ``frame``; failed results with severity "error" reject the dataset.

    ``hashes`` are the frame's ``row_hashes``, when the caller has them already.
    """
    features = resolve_features(spec, frame, previous=previous_profile)
    results = [
        check_required_columns(frame, spec=spec, features=features),
        *check_feature_types(frame, features=features),
    ]
    if previous_profile is not None:
        results += check_columns_changed(frame, previous=previous_profile, features=features)
    results.append(check_not_empty(frame))
    if frame.empty or spec.target not in frame.columns:
        return results
    results += [
        check_min_rows(frame, minimum=spec.validation.min_rows),
        check_target(frame, spec=spec),
        *check_missing(frame, columns=[spec.target, *features.columns], spec=spec),
        check_duplicates(frame, maximum=spec.validation.max_duplicate_ratio, hashes=hashes),
    ]
    if spec.task == "classification":
        results += [check_classes(frame, target=spec.target), check_imbalance(frame, spec=spec)]
        if spec.sensitive_attribute in frame.columns:
            results.append(check_label_bias(frame, spec=spec))
    if previous_profile is not None:
        results += check_drift(frame, previous=previous_profile, spec=spec)
    return results


def unreadable(error: DatasetReadError) -> RuleResult:
    """The failure to report when the file could not be read at all."""
    return _rule(rule="read.parse", passed=False, message=str(error))


def errors_in(results: list[RuleResult]) -> list[RuleResult]:
    """The failed rules that reject a dataset."""
    return [r for r in results if not r.passed and r.severity == "error"]


def warnings_in(results: list[RuleResult]) -> list[RuleResult]:
    """The failed rules that only warn."""
    return [r for r in results if not r.passed and r.severity == "warning"]


def check_required_columns(frame: pd.DataFrame, *, spec: PipelineSpec, features: FeatureSet) -> RuleResult:
    """The target, the features and the sensitive attribute are all present."""
    required = [spec.target, *features.columns]
    if spec.sensitive_attribute is not None:
        required.append(spec.sensitive_attribute)
    missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
    return _rule(
        rule="schema.required_columns",
        passed=not missing,
        figure=len(missing),
        threshold=0,
        message=f"missing columns: {_names(missing)}" if missing else "all required present",
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
    return _rule(
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
        _rule(
            rule="schema.columns_added",
            passed=not added,
            severity="warning",
            figure=len(added),
            threshold=0,
            message=f"new columns, not used as features unless declared: {_names(added)}"
            if added
            else "no new columns",
        ),
        _rule(
            rule="schema.columns_removed",
            passed=not removed,
            severity="warning",
            figure=len(removed),
            threshold=0,
            message=f"columns gone since the previous version: {_names(removed)}"
            if removed
            else "no columns removed",
        ),
    ]


def check_not_empty(frame: pd.DataFrame) -> RuleResult:
    """The dataset has at least one row and one column."""
    return _rule(
        rule="quality.not_empty",
        passed=not frame.empty,
        figure=len(frame),
        threshold=1,
        message="the dataset has no rows" if frame.empty else f"{len(frame)} rows",
    )


def check_min_rows(frame: pd.DataFrame, *, minimum: int) -> RuleResult:
    """Enough rows to train and hold out a test set."""
    return _rule(
        rule="quality.min_rows",
        passed=len(frame) >= minimum,
        figure=len(frame),
        threshold=minimum,
        message=f"{len(frame)} rows, at least {minimum} needed",
    )


def check_target(frame: pd.DataFrame, *, spec: PipelineSpec) -> RuleResult:
    """The target has values (of a numeric type for regression); rows without one are dropped."""
    target = frame[spec.target]
    labelled = int(target.notna().sum())
    if spec.task == "regression" and not is_numeric_column(target):
        return _rule(
            rule="quality.target",
            passed=False,
            column=spec.target,
            figure=labelled,
            threshold=1,
            message=f"a regression target must be numeric, found {target.dtype}",
        )
    unlabelled = len(target) - labelled
    return _rule(
        rule="quality.target",
        passed=labelled > 0,
        column=spec.target,
        figure=labelled,
        threshold=1,
        message=f"{labelled} labelled rows"
        + (f"; {unlabelled} rows without a target are left out" if unlabelled else ""),
    )


def check_missing(frame: pd.DataFrame, *, columns: list[str], spec: PipelineSpec) -> list[RuleResult]:
    """Share of missing values per column, against ``max_missing_ratio``."""
    limit = spec.validation.max_missing_ratio
    present = [c for c in dict.fromkeys(columns) if c in frame.columns]
    ratios = frame[present].isna().mean()
    return [
        _rule(
            rule="quality.missing_ratio",
            passed=float(ratio) <= limit,
            column=column,
            figure=float(ratio),
            threshold=limit,
            message=f"{float(ratio):.1%} missing",
        )
        for column, ratio in ratios.items()
    ]


def check_duplicates(frame: pd.DataFrame, *, maximum: float, hashes: np.ndarray | None = None) -> RuleResult:
    """Share of rows that repeat an earlier row exactly (``hashes``: the frame's ``row_hashes``)."""
    ratio = float(_duplicated(frame, hashes).sum() / len(frame)) if len(frame) else 0.0
    return _rule(
        rule="quality.duplicate_rows",
        passed=ratio <= maximum,
        figure=ratio,
        threshold=maximum,
        message=f"{ratio:.1%} duplicate rows",
    )


def _duplicated(frame: pd.DataFrame, hashes: np.ndarray | None) -> pd.Series:
    """``frame.duplicated()``, with one 64-bit hash per row instead of a hash table per column."""
    if any(dtype == np.dtype(object) for dtype in frame.dtypes):
        # Python objects: 1 and 1.0 are equal but hash apart as text, so compare them exactly.
        return frame.duplicated()
    if hashes is None:
        hashes = row_hashes(frame)
    # Equal rows hash alike; only rows sharing a hash are compared, exactly (collisions aside).
    candidates = pd.Series(hashes).duplicated(keep=False).to_numpy()
    found = pd.Series(False, index=frame.index)
    if candidates.any():
        found[candidates] = frame[candidates].duplicated().to_numpy()
    return found


def check_classes(frame: pd.DataFrame, *, target: str) -> RuleResult:
    """A classification target has at least two classes."""
    classes = int(frame[target].nunique(dropna=True))
    return _rule(
        rule="quality.target_classes",
        passed=classes >= 2,
        column=target,
        figure=classes,
        threshold=2,
        message=f"{classes} distinct classes",
    )


def check_imbalance(frame: pd.DataFrame, *, spec: PipelineSpec) -> RuleResult:
    """Rows of the most frequent class per row of the rarest one."""
    counts = frame[spec.target].value_counts(dropna=True)
    limit = spec.validation.max_class_imbalance
    ratio = float(counts.max() / counts.min()) if len(counts) >= 2 else None
    return _rule(
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
        return _rule(
            rule=rule,
            passed=True,
            column=attribute,
            threshold=limit,
            message="no positive label: set positive_label for a multiclass target",
        )
    is_positive = as_categories(labelled[spec.target]) == positive
    if not is_positive.any():
        return _rule(
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
        return _rule(
            rule=rule,
            passed=True,
            column=attribute,
            threshold=limit,
            message=f"fewer than two groups with {spec.validation.min_group_rows}+ rows",
        )
    spread = float(rates.max() - rates.min())
    shown = _names([f"{group}: {rate:.1%}" for group, rate in rates.sort_index().items()])
    return _rule(
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


def check_drift(frame: pd.DataFrame, *, previous: DataProfile, spec: PipelineSpec) -> list[RuleResult]:
    """PSI of each feature against the previous dataset version's profile (warnings)."""
    limit = spec.validation.drift_psi_warning
    return [
        _rule(
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


def _rule(*, rule: str, column: str | None = None, message: str = "", **fields: Any) -> RuleResult:
    """A result whose column name and message fit the event's limits, whatever the data held."""
    return RuleResult(rule=rule, column=column[:200] if column else None, message=message[:4000], **fields)


def _names(items: list[str], *, shown: int = 20) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(str(item)[:100] for item in items[:shown]) + more
