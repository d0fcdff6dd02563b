"""The validation report: a standalone HTML page of the rule results and the data profile."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from shared.events.envelope import RuleResult
from shared.html_report import cells, page, table, table_html
from shared.profile import OTHER, DataProfile, FeatureProfile


def render_validation_report(
    results: Sequence[RuleResult],
    *,
    pipeline: str,
    profile: DataProfile | None = None,
    dataset_version: str | None = None,
    source_uri: str | None = None,
) -> str:
    """The report as a standalone HTML page; every value from the data is escaped."""
    failed = [r for r in results if not r.passed and r.severity == "error"]
    warned = [r for r in results if not r.passed and r.severity == "warning"]
    verdict = "rejected" if failed else "accepted"
    facts = [("Pipeline", pipeline), ("Dataset version", dataset_version), ("Source", source_uri)]
    if profile is not None:
        facts += [("Rows", str(profile.rows)), ("Columns", str(len(profile.columns)))]
    parts = [
        f"<h1>Validation report: {escape(pipeline)}</h1>",
        f'<p class="banner {verdict}">Dataset {verdict}: {len(failed)} errors, '
        f"{len(warned)} warnings, {len(results)} checks</p>",
        _facts(facts),
        "<h2>Checks</h2>",
        _rules_table(results),
    ]
    if profile is not None:
        parts += _profile_sections(profile)
    return page(f"Validation report: {pipeline}", parts)


def _rules_table(results: Sequence[RuleResult]) -> str:
    def order(result: RuleResult) -> int:
        return 2 if result.passed else (0 if result.severity == "error" else 1)

    rows = []
    for r in sorted(results, key=order):
        status = "passed" if r.passed else r.severity
        values = [r.rule, r.column or "", r.figure, r.threshold, r.message]
        rows.append(f'<td class="{status}">{status}</td>' + cells(values))
    header = ["status", "rule", "column", "figure", "threshold", "detail"]
    return table_html(header, rows)


def _profile_sections(profile: DataProfile) -> list[str]:
    numeric = [(n, f) for n, f in profile.features.items() if f.kind == "numeric"]
    categorical = [(n, f) for n, f in profile.features.items() if f.kind == "categorical"]
    sections = ["<h2>Profile</h2>"]
    if numeric:
        header = ["feature", "count", "missing", "mean", "std", "min", "p5", "p50", "p95", "max"]
        sections += ["<h3>Numeric features</h3>", table(header, [_numeric_row(*n) for n in numeric])]
    if categorical:
        header = ["feature", "count", "missing", "distinct", "most frequent"]
        rows = [[n, f.count, f.missing, f.distinct, _top(f)] for n, f in categorical]
        sections += ["<h3>Categorical features</h3>", table(header, rows)]
    others = [name for name in profile.columns if name not in profile.features]
    if others:
        rows = [[name, profile.columns[name]] for name in others]
        sections += ["<h3>Other columns</h3>", table(["column", "kind"], rows)]
    return sections


def _numeric_row(name: str, f: FeatureProfile) -> list[object]:
    q = f.quantiles
    return [name, f.count, f.missing, f.mean, f.std, f.min, q.get("p5"), q.get("p50"), q.get("p95"), f.max]


def _top(feature: FeatureProfile, *, shown: int = 5) -> str:
    total = feature.count or 1
    named = [(k, v) for k, v in feature.categories.items() if k != OTHER][:shown]
    return ", ".join(f"{label} ({count / total:.0%})" for label, count in named)


def _facts(facts: Sequence[tuple[str, str | None]]) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v or '-')}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>"
