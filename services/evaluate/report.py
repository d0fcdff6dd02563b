"""The evaluation report: a standalone HTML page, and its plot as PNG bytes."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.evaluate.metrics import Scores
from shared.events.envelope import ChampionComparison, GateResult
from shared.html_report import cells, page, table, table_html
from shared.pipeline_spec import HIGHER_IS_BETTER

# Past this many classes the matrix cells are too small to print counts in.
_ANNOTATED_CLASSES = 20


def render_plot(scores: Scores) -> bytes:
    """A PNG: the confusion matrix for classification, residuals for regression."""
    figure = _confusion_figure(scores) if scores.task == "classification" else _residual_figure(scores)
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100, metadata={"Software": None})
    return out.getvalue()


def render_evaluation_report(
    scores: Scores,
    *,
    gates: Sequence[GateResult],
    pipeline: str,
    run_id: str,
    champion: ChampionComparison | None = None,
    plot_png: bytes | None = None,
) -> str:
    """The report as a standalone HTML page (the plot embedded); every value is escaped."""
    passed = all(g.passed for g in gates)
    verdict = "passed" if passed else "failed"
    parts = [
        f"<h1>Evaluation report: {escape(pipeline)}</h1>",
        f"<p>Run <code>{escape(run_id)}</code>, {scores.rows} test rows, task {scores.task}.</p>",
        f'<p class="banner {verdict}">Quality gates {verdict}: '
        f"{sum(g.passed for g in gates)} of {len(gates)} hold</p>",
        "<h2>Gates</h2>",
        _gates_table(gates),
        "<h2>Metrics</h2>",
        _metrics_table(scores, champion=champion),
    ]
    if scores.confusion_matrix:
        parts += ["<h2>Confusion matrix</h2>", _confusion_table(scores)]
    if scores.residuals is not None:
        r = scores.residuals
        rows = [["mean", r.mean], ["std", r.std], ["min", r.min], ["max", r.max]]
        rows += [[name, value] for name, value in r.quantiles.items()]
        parts += ["<h2>Residuals (actual - predicted)</h2>", table(["", "value"], rows)]
    if scores.by_group:
        parts += _group_sections(scores)
    if plot_png is not None:
        data = base64.b64encode(plot_png).decode()
        parts.append(f'<h2>Plot</h2><img alt="evaluation plot" src="data:image/png;base64,{data}">')
    return page(f"Evaluation report: {pipeline}", parts)


def _gates_table(gates: Sequence[GateResult]) -> str:
    rows = []
    for g in gates:
        status = "passed" if g.passed else "failed"
        values = cells([g.gate, g.metric, g.value, g.threshold, g.message])
        rows.append(f'<td class="{status}">{status}</td>{values}')
    return table_html(["status", "gate", "metric", "value", "threshold", "detail"], rows)


def _metrics_table(scores: Scores, *, champion: ChampionComparison | None) -> str:
    header = ["metric", "challenger", "better when"]
    if champion is not None:
        header.insert(2, f"champion (v{champion.champion_version})")
    rows: list[list[object]] = []
    for name in [*scores.metrics, *scores.undefined]:
        row: list[object] = [name, scores.metrics.get(name, scores.undefined.get(name))]
        if champion is not None:
            row.append(champion.champion_metrics.get(name))
        row.append("higher" if HIGHER_IS_BETTER.get(name, True) else "lower")
        rows.append(row)
    return table(header, rows)


def _confusion_table(scores: Scores) -> str:
    header = ["actual \\ predicted", *scores.labels]
    rows = [[label, *counts] for label, counts in zip(scores.labels, scores.confusion_matrix, strict=True)]
    return table(header, rows)


def _group_sections(scores: Scores) -> list[str]:
    names = sorted({m for g in scores.by_group.values() for m in g.metrics})
    rows = [[key, g.rows, *(g.metrics.get(n) for n in names)] for key, g in scores.by_group.items()]
    parts = [
        f"<h2>By {escape(scores.sensitive_attribute or 'group')}</h2>",
        table(["group", "rows", *names], rows),
    ]
    if scores.group_gaps:
        gaps = [[name, gap] for name, gap in scores.group_gaps.items()]
        parts += ["<h3>Gap between groups (best - worst)</h3>", table(["metric", "gap"], gaps)]
    return parts


def _confusion_figure(scores: Scores) -> Figure:
    matrix = np.asarray(scores.confusion_matrix, dtype=float)
    size = max(4.0, min(12.0, 1.0 + 0.5 * len(scores.labels)))
    figure = Figure(figsize=(size + 1, size))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(scores.labels))
    ax.set_xticks(ticks, scores.labels, rotation=45, ha="right")
    ax.set_yticks(ticks, scores.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix")
    if len(scores.labels) <= _ANNOTATED_CLASSES:
        middle = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if count > middle else "black"
            ax.text(j, i, f"{int(count)}", ha="center", va="center", color=color)
    figure.tight_layout()
    return figure


def _residual_figure(scores: Scores) -> Figure:
    predicted = np.array([p for p, _ in scores.points], dtype=float)
    actual = np.array([a for _, a in scores.points], dtype=float)
    figure = Figure(figsize=(10, 4.5))
    left, right = figure.subplots(1, 2)
    left.scatter(predicted, actual, s=10, alpha=0.6)
    if len(predicted):
        low, high = min(predicted.min(), actual.min()), max(predicted.max(), actual.max())
        left.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    left.set_xlabel("predicted")
    left.set_ylabel("actual")
    left.set_title("Predicted vs actual")
    right.scatter(predicted, actual - predicted, s=10, alpha=0.6)
    right.axhline(0, color="grey", linestyle="--", linewidth=1)
    right.set_xlabel("predicted")
    right.set_ylabel("residual (actual - predicted)")
    right.set_title("Residuals")
    figure.tight_layout()
    return figure
