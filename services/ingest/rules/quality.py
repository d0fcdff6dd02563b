"""Quality rules: enough rows, a usable target, few missing values and few duplicate rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.ingest.row_hashes import row_hashes
from services.ingest.rules.results import rule_result
from shared.events.envelope import RuleResult
from shared.pipeline_spec import PipelineSpec, is_numeric_column


def check_not_empty(frame: pd.DataFrame) -> RuleResult:
    """The dataset has at least one row and one column."""
    return rule_result(
        rule="quality.not_empty",
        passed=not frame.empty,
        figure=len(frame),
        threshold=1,
        message="the dataset has no rows" if frame.empty else f"{len(frame)} rows",
    )


def check_min_rows(frame: pd.DataFrame, *, minimum: int) -> RuleResult:
    """Enough rows to train and hold out a test set."""
    return rule_result(
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
        return rule_result(
            rule="quality.target",
            passed=False,
            column=spec.target,
            figure=labelled,
            threshold=1,
            message=f"a regression target must be numeric, found {target.dtype}",
        )
    unlabelled = len(target) - labelled
    return rule_result(
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
        rule_result(
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
    return rule_result(
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
    return rule_result(
        rule="quality.target_classes",
        passed=classes >= 2,
        column=target,
        figure=classes,
        threshold=2,
        message=f"{classes} distinct classes",
    )
