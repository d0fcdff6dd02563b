"""A version's bias figures, from an evaluation report as evaluate writes it, on the group page."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from services.console.app import templates
from services.console.bias import bias_figures
from services.console.timeline import Timeline
from services.console.views import group_view
from services.evaluate.metrics import score_model
from shared.pipeline_spec import PipelineSpec

EVIL = "<b>north</b>"


def spec(**fields: Any) -> PipelineSpec:
    base = {"name": "churn", "target": "y", "task": "classification", "validation": {"min_group_rows": 5}}
    return PipelineSpec.from_mapping(base | fields)


def evaluated(**fields: Any) -> dict[str, Any]:
    """An evaluation report's JSON: a real model scored on a test set with a sensitive column."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=80)
    frame = pd.DataFrame(
        {
            "x": x,
            "region": np.where(np.arange(80) % 3 == 0, EVIL, "south"),
            "y": (x + rng.normal(scale=0.8, size=80) > 0).astype(int),
        }
    )
    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    scores = score_model(model, frame, spec=spec(**fields))
    return {"scores": scores.model_dump(mode="json"), "html": "s3://conveyor-artifacts/churn/r.html"}


def version(report: dict[str, Any]) -> dict[str, Any]:
    """A version as the registry answers it, with the parts the page reads."""
    return {
        "pipeline": "churn",
        "version": 3,
        "status": "PendingManualApproval",
        "run_id": "run-3",
        "registered_at": "2026-12-03T07:00:00+00:00",
        "metrics": report["scores"]["metrics"],
        "passed_gates": True,
        "model": {"uri": "s3://conveyor-artifacts/churn/m", "sha256": "a" * 64, "size_bytes": 10},
        "lineage": {
            "dataset_version": "b" * 64,
            "run_id": "run-3",
            "spec_version": "spec-1",
            "code_version": "c",
            "framework": "scikit-learn",
            "framework_version": "1",
        },
        "report": {"uri": "s3://conveyor-artifacts/churn/r.json", "sha256": "d" * 64, "size_bytes": 1},
        "gates": [],
        "champion_version": None,
        "audit": [],
        "deployments": [],
    }


def test_the_report_s_groups_metrics_and_gaps_are_read_as_the_evaluate_service_wrote_them() -> None:
    report = evaluated(sensitive_attribute="region")
    figures = bias_figures(report)
    assert figures is not None and figures.attribute == "region"
    written = report["scores"]["by_group"]
    assert [g.group for g in figures.groups] == sorted(written) == [EVIL, "south"]
    assert [g.rows for g in figures.groups] == [27, 53]
    for row in figures.groups:
        assert row.metrics == written[row.group]["metrics"]
    assert figures.metrics == ["accuracy", "f1_macro", "positive_rate", "true_positive_rate"]
    north, south = (g.metrics["positive_rate"] for g in figures.groups)
    assert figures.gaps["positive_rate"] == pytest.approx(abs(north - south))


def test_a_spec_without_a_sensitive_attribute_has_no_bias_figures() -> None:
    assert bias_figures(evaluated()) is None
    assert bias_figures({"html": "s3://x/y.html"}) is None


def test_the_group_page_shows_each_group_and_the_gap_and_escapes_group_names() -> None:
    report = evaluated(sensitive_attribute="region")
    figures = bias_figures(report)
    assert figures is not None
    selected = version(report)
    view = group_view(Timeline(), pipeline="churn", versions=[selected], selected=selected, before=None)
    html = templates().env.get_template("group.html").render(group=view, bias=figures, csrf="c")
    assert EVIL not in html and "&lt;b&gt;north&lt;/b&gt;" in html
    table = html[html.index('<table id="bias">') : html.index("</table>", html.index('<table id="bias">'))]
    cells = re.findall(r'<tr data-group="([^"]+)"><td>[^<]*</td><td>(\d+)</td>(.*?)</tr>', table)
    escaped = "&lt;b&gt;north&lt;/b&gt;"
    assert [(group, rows) for group, rows, _ in cells] == [(escaped, "27"), ("south", "53")]
    accuracy = report["scores"]["by_group"]["south"]["metrics"]["accuracy"]
    assert f'<td data-metric="accuracy">{accuracy:.4f}</td>' in cells[1][2]
    gap = report["scores"]["group_gaps"]["positive_rate"]
    assert re.search(rf'gap \(highest - lowest\).*<td data-metric="positive_rate">{gap:.4f}</td>', table)
    plain = (
        templates()
        .env.get_template("group.html")
        .render(group=view, bias=None, bias_note="no sensitive attribute in this version's spec", csrf="c")
    )
    assert 'id="bias"' not in plain and "no sensitive attribute in this version&#39;s spec" in plain
