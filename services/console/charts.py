"""Charts drawn on the server as SVG: no chart library in the browser, and nothing to escape wrong.

Every function returns geometry for a template to draw; the templates (autoescaped) hold the
markup, so a feature name from an event is text, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.console.timeline import DriftPoint
from services.console.traces import Span

WIDTH = 640
ROW = 18


@dataclass(frozen=True)
class Bar:
    """One bar of the trace waterfall."""

    label: str
    service: str
    x: float
    y: float
    width: float
    title: str


def waterfall_bars(spans: list[Span], *, width: float = WIDTH - 220) -> list[Bar]:
    """Bars for each span, scaled to the trace's length."""
    if not spans:
        return []
    total = max(s.start_ms + s.duration_ms for s in spans) or 1.0
    return [
        Bar(
            label=f"{span.service}: {span.name}"[:40],
            service=span.service,
            x=220 + span.start_ms / total * width,
            y=i * ROW,
            width=max(span.duration_ms / total * width, 1.0),
            title=f"{span.service} {span.name}: {span.duration_ms:.1f} ms at +{span.start_ms:.1f} ms",
        )
        for i, span in enumerate(spans)
    ]


@dataclass(frozen=True)
class Series:
    """One feature's PSI over time, as an SVG polyline."""

    feature: str
    points: str
    last: float
    over: bool


@dataclass(frozen=True)
class PsiChart:
    """PSI per feature against the threshold line, over a pipeline's drift checks."""

    series: list[Series]
    threshold_y: float
    height: float
    top: float
    checks: int
    first: datetime | None
    last: datetime | None


def psi_chart(points: list[DriftPoint], *, height: float = 160.0, features: int = 8) -> PsiChart:
    """The chart of the latest checks: the features with the highest latest PSI, and the threshold."""
    if not points:
        return PsiChart([], height, height, 0.0, 0, None, None)
    threshold = points[-1].threshold
    latest = points[-1].psi
    chosen = sorted(latest, key=lambda f: latest[f], reverse=True)[:features]
    top = max([threshold * 1.5, *(p.psi.get(f, 0.0) for p in points for f in chosen)]) or 1.0
    step = WIDTH / max(len(points) - 1, 1)

    def y(value: float) -> float:
        return round(height - value / top * height, 1)

    series = [
        Series(
            feature=feature,
            points=" ".join(
                f"{round(i * step, 1)},{y(p.psi.get(feature, 0.0))}" for i, p in enumerate(points)
            ),
            last=latest.get(feature, 0.0),
            over=latest.get(feature, 0.0) > threshold,
        )
        for feature in chosen
    ]
    return PsiChart(series, y(threshold), height, top, len(points), points[0].at, points[-1].at)
