"""The validation report escapes what it shows."""

from __future__ import annotations

import pandas as pd

from services.ingest.report import render_validation_report
from shared.events.envelope import RuleResult
from shared.profile import profile_frame


def test_report_escapes_values_and_shows_verdict() -> None:
    evil = "<script>alert(1)</script>"
    frame = pd.DataFrame({evil: [1.0, 2.0, None], "plan": [evil, "b", "b"], "y": [0, 1, 0]})
    profile = profile_frame(frame, numeric=[evil], categorical=["plan"])
    results = [
        RuleResult(
            rule="quality.missing_ratio",
            passed=False,
            column=evil,
            figure=1 / 3,
            threshold=0.2,
            message=f"{evil} missing",
        ),
        RuleResult(
            rule="drift.psi", passed=False, severity="warning", column="plan", figure=0.4, threshold=0.2
        ),
        RuleResult(rule="quality.min_rows", passed=True, figure=3, threshold=1),
    ]
    page = render_validation_report(
        results,
        pipeline="churn",
        profile=profile,
        dataset_version="ab" * 32,
        source_uri=f"s3://landing/{evil}.csv",
    )
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "Dataset rejected: 1 errors, 1 warnings, 3 checks" in page
    assert page.startswith("<!DOCTYPE html>")
    assert "0.3333" in page and "Numeric features" in page and "Categorical features" in page


def test_report_without_profile_or_failures() -> None:
    page = render_validation_report(
        [RuleResult(rule="quality.not_empty", passed=True, figure=10, threshold=1)],
        pipeline="churn",
    )
    assert "Dataset accepted: 0 errors, 0 warnings, 1 checks" in page
