"""Readable standalone HTML reports: one page, one style, every value escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2329; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.error, .failed { color: #b42318; font-weight: 600; }
.warning { color: #9a6700; font-weight: 600; }
.passed { color: #1a7f37; }
.banner { padding: 0.6rem 1rem; border-radius: 6px; display: inline-block; font-weight: 600; }
.banner.accepted, .banner.passed { background: #dafbe1; }
.banner.rejected, .banner.failed { background: #ffebe9; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
img { max-width: 100%; }
"""


def page(title: str, parts: Sequence[str]) -> str:
    """A complete HTML document of ``parts`` (already HTML) under ``title``."""
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table of plain values (escaped; numbers right-aligned)."""
    return table_html(header, [cells(row) for row in rows])


def table_html(header: Sequence[str], rows: Iterable[str]) -> str:
    """A table whose rows are already HTML cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cells(values: Sequence[object]) -> str:
    """One row's cells, escaped."""
    out = []
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(f'<td class="num">{escape(number(value))}</td>')
        else:
            out.append(f"<td>{escape('' if value is None else str(value))}</td>")
    return "".join(out)


def number(value: float | None) -> str:
    """A number as people read it in a report."""
    if value is None:
        return "-"
    if 1e4 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"
