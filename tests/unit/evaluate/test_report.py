"""The evaluation report (escaped HTML) and its plot (PNG)."""

from __future__ import annotations

from services.evaluate.metrics import GroupScores, ResidualSummary, Scores
from services.evaluate.report import render_evaluation_report, render_plot
from shared.events.envelope import ChampionComparison, GateResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<img src=x onerror=alert(1)>"


def classification_scores() -> Scores:
    return Scores(
        task="classification",
        rows=10,
        metrics={"accuracy": 0.8, "f1_macro": 0.75},
        undefined={"roc_auc": "the test set holds a single class"},
        labels=["no", EVIL],
        confusion_matrix=[[5, 1], [1, 3]],
        sensitive_attribute="group",
        by_group={EVIL: GroupScores(rows=5, metrics={"accuracy": 0.8})},
    )


def regression_scores() -> Scores:
    return Scores(
        task="regression",
        rows=3,
        metrics={"rmse": 1.0, "mae": 0.8, "r2": 0.5},
        residuals=ResidualSummary(mean=0.0, std=1.0, min=-1.0, max=1.0, quantiles={"p5": -0.9, "p95": 0.9}),
        points=[(1.0, 2.0), (2.0, 2.0), (3.0, 2.5)],
    )


def test_plots_are_png() -> None:
    assert render_plot(classification_scores()).startswith(PNG_MAGIC)
    assert render_plot(regression_scores()).startswith(PNG_MAGIC)


def test_report_escapes_and_embeds_the_plot() -> None:
    gates = [
        GateResult(gate="min_accuracy", metric="accuracy", passed=True, value=0.8, threshold=0.7),
        GateResult(
            gate="champion_improvement",
            metric="f1_macro",
            passed=False,
            value=-0.05,
            threshold=0.0,
            message=EVIL,
        ),
    ]
    champion = ChampionComparison(champion_version=3, champion_metrics={"f1_macro": 0.8})
    page = render_evaluation_report(
        classification_scores(),
        gates=gates,
        pipeline="churn",
        run_id="run-0123456789abcdef",
        champion=champion,
        plot_png=render_plot(classification_scores()),
    )
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Quality gates failed: 1 of 2 hold" in page
    assert "champion (v3)" in page
    assert 'src="data:image/png;base64,' in page
    assert "single class" in page


def test_regression_report() -> None:
    page = render_evaluation_report(regression_scores(), gates=[], pipeline="price", run_id="run-1")
    assert "Residuals (actual - predicted)" in page
    assert "Confusion matrix" not in page
