"""Dataset validation: named rules over a dataset, each with the figure it measured.

Errors reject the dataset; warnings travel with the accepted dataset. Every rule that ran is
returned, passed or not, so the report shows the figures of the good news as well.

Columns against the previous version's profile: a removed column the model uses is an error
(the required-columns rule), any other removed column and every added column is a warning;
added columns do not become features once a profile exists (see ``resolve_features``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd

from services.ingest.reading import DatasetReadError, decode
from services.ingest.rules.bias import check_imbalance, check_label_bias
from services.ingest.rules.drift import check_drift
from services.ingest.rules.quality import (
    check_classes,
    check_duplicates,
    check_min_rows,
    check_missing,
    check_not_empty,
    check_target,
)
from services.ingest.rules.results import rule_result
from services.ingest.rules.schema import check_columns_changed, check_feature_types, check_required_columns
from shared.events.envelope import RuleResult
from shared.pipeline_spec import PipelineSpec, resolve_features
from shared.profile import DataProfile


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
    return rule_result(rule="read.parse", passed=False, message=str(error))


def errors_in(results: list[RuleResult]) -> list[RuleResult]:
    """The failed rules that reject a dataset."""
    return [r for r in results if not r.passed and r.severity == "error"]


def warnings_in(results: list[RuleResult]) -> list[RuleResult]:
    """The failed rules that only warn."""
    return [r for r in results if not r.passed and r.severity == "warning"]
