"""The validation report: a standalone HTML page of the rule results and the data profile."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from shared.events.envelope import RuleResult
from shared.profile import OTHER, DataProfile, FeatureProfile

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2329; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #b42318; font-weight: 600; }
.warning { color: #9a6700; font-weight: 600; }
.passed { color: #1a7f37; }
.banner { padding: 0.6rem 1rem; border-radius: 6px; display: inline-block; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
.banner.accepted { background: #dafbe1; } .banner.rejected { background: #ffebe9; }
"""


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
    return _page(f"Validation report: {pipeline}", parts)


def _rules_table(results: Sequence[RuleResult]) -> str:
    def order(result: RuleResult) -> int:
        return 2 if result.passed else (0 if result.severity == "error" else 1)

    rows = []
    for r in sorted(results, key=order):
        status = "passed" if r.passed else r.severity
        cells = [r.rule, r.column or "", r.figure, r.threshold, r.message]
        rows.append(f'<td class="{status}">{status}</td>' + _cells(cells))
    header = ["status", "rule", "column", "figure", "threshold", "detail"]
    return _table_html(header, rows)


def _profile_sections(profile: DataProfile) -> list[str]:
    numeric = [(n, f) for n, f in profile.features.items() if f.kind == "numeric"]
    categorical = [(n, f) for n, f in profile.features.items() if f.kind == "categorical"]
    sections = ["<h2>Profile</h2>"]
    if numeric:
        header = ["feature", "count", "missing", "mean", "std", "min", "p5", "p50", "p95", "max"]
        sections += ["<h3>Numeric features</h3>", _table(header, [_numeric_row(*n) for n in numeric])]
    if categorical:
        header = ["feature", "count", "missing", "distinct", "most frequent"]
        rows = [[n, f.count, f.missing, f.distinct, _top(f)] for n, f in categorical]
        sections += ["<h3>Categorical features</h3>", _table(header, rows)]
    others = [name for name in profile.columns if name not in profile.features]
    if others:
        rows = [[name, profile.columns[name]] for name in others]
        sections += ["<h3>Other columns</h3>", _table(["column", "kind"], rows)]
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


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    return _table_html(header, [_cells(row) for row in rows])


def _table_html(header: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cells(values: Sequence[object]) -> str:
    out = []
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(f'<td class="num">{escape(_number(value))}</td>')
        else:
            out.append(f"<td>{escape('' if value is None else str(value))}</td>")
    return "".join(out)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if 1e4 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _page(title: str, parts: Sequence[str]) -> str:
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
