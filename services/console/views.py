"""What each page shows, gathered from the timeline and the APIs: plain functions, no HTTP.

The registry and deploy services are read with the same clients the CLI uses; their calls are
blocking, so the async routes run them in threads, while the timeline (changed only on the event
loop) is read on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from services.console.charts import Bar, PsiChart, psi_chart, waterfall_bars
from services.console.figures import Feedback, LiveFigures, Readings, read_figures
from services.console.timeline import STEPS, Arrival, Pipeline, Timeline
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import DatasetRejected, DatasetValidated, ModelEvaluated, ModelRegistered

PAGE = 50


@dataclass(frozen=True)
class StepView:
    """One node of an arrival's graph."""

    name: str
    state: str  # done, failed, pending, or skipped (after a failure)
    event_type: str | None = None
    occurred_at: datetime | None = None
    took_s: float | None = None
    event_json: str | None = None
    reports: list[tuple[str, str]] = field(default_factory=list)


def arrival_steps(arrival: Arrival) -> list[StepView]:
    """The graph of an arrival: each step, its event and how long it took after the previous one."""
    views: list[StepView] = []
    previous: datetime | None = None
    stopped = False
    for step in STEPS:
        reached = arrival.steps.get(step.name)
        if reached is None:
            views.append(StepView(step.name, "skipped" if stopped else "pending"))
            continue
        event = reached.event
        took = (event.occurred_at - previous).total_seconds() if previous else None
        previous = event.occurred_at
        stopped = stopped or not reached.ok
        views.append(
            StepView(
                name=step.name,
                state="done" if reached.ok else "failed",
                event_type=type(event).__name__,
                occurred_at=event.occurred_at,
                took_s=took,
                event_json=event.model_dump_json(indent=2),
                reports=_reports(event),
            )
        )
    return views


def _reports(event: Any) -> list[tuple[str, str]]:
    if isinstance(event, DatasetValidated | DatasetRejected) and event.report is not None:
        return [("validation report", event.report.uri)]
    if isinstance(event, ModelEvaluated) and event.report is not None:
        return [("evaluation report", event.report.uri)]
    return []


def trace_bars(spans: list[Any]) -> list[Bar]:
    """The waterfall of an arrival's trace."""
    return waterfall_bars(spans)


@dataclass(frozen=True)
class PipelineRow:
    """One line of the pipelines page."""

    pipeline: Pipeline
    last: Arrival | None


def pipeline_rows(timeline: Timeline) -> list[PipelineRow]:
    """Every pipeline with its last arrival, by name."""
    return [
        PipelineRow(p, timeline.arrivals.get(p.last_arrival) if p.last_arrival else None)
        for _, p in sorted(timeline.pipelines.items())
    ]


@dataclass(frozen=True)
class GroupView:
    """A model group's page: a page of versions and one version in full."""

    pipeline: str
    versions: list[dict[str, Any]]
    total: int
    older_than: int | None
    selected: dict[str, Any] | None
    deltas: list[tuple[str, float, float | None, float | None]]
    validation_report: str | None
    arrival: UUID | None
    arrivals: list[Arrival]


def group_view(
    timeline: Timeline,
    *,
    pipeline: str,
    versions: list[dict[str, Any]],
    selected: dict[str, Any] | None,
    before: int | None,
) -> GroupView:
    """The group page from the registry's answers and what the timeline adds (comparisons, reports)."""
    ordered = sorted(versions, key=lambda v: v["version"], reverse=True)
    if before is not None:
        ordered = [v for v in ordered if v["version"] < before]
    shown = ordered[:PAGE]
    older = shown[-1]["version"] if len(ordered) > PAGE else None
    deltas: list[tuple[str, float, float | None, float | None]] = []
    report = None
    chain = None
    if selected is not None:
        evaluated = timeline.evaluations.get((pipeline, selected["run_id"]))
        champion = evaluated.champion.champion_metrics if evaluated and evaluated.champion else {}
        for metric, value in selected["metrics"].items():
            theirs = champion.get(metric)
            deltas.append((metric, value, theirs, value - theirs if theirs is not None else None))
        validated = timeline.validations.get((pipeline, selected["lineage"]["dataset_version"]))
        report = validated.report.uri if validated else None
        chain = timeline.version_chain.get((pipeline, selected["version"]))
    return GroupView(
        pipeline=pipeline,
        versions=shown,
        total=len(versions),
        older_than=older,
        selected=selected,
        deltas=deltas,
        validation_report=report,
        arrival=chain,
        arrivals=timeline.arrivals_of(pipeline, limit=10),
    )


@dataclass(frozen=True)
class LiveView:
    """An endpoint's live part: one worker's own answer, and the whole endpoint's metrics."""

    deployment: dict[str, Any]
    performance: dict[str, Any] | None
    performance_error: str | None
    figures: LiveFigures | None
    figures_error: str | None

    @property
    def feedback(self) -> list[tuple[int, Feedback]]:
        """Each version's feedback, the active version first, then the newest."""
        active = self.deployment.get("active_version")
        found = self.figures.feedback if self.figures else {}
        return sorted(found.items(), key=lambda item: (item[0] != active, -item[0]))


def live_view(readings: Readings, deployment: dict[str, Any]) -> LiveView:
    """Read an endpoint's figures now (blocking: two HTTP calls)."""
    performance, performance_error = performance_of(deployment["endpoint_url"])
    figures, figures_error = read_figures(readings, deployment["endpoint_url"])
    return LiveView(deployment, performance, performance_error, figures, figures_error)


@dataclass(frozen=True)
class DeploymentView:
    """One endpoint on the deployments page."""

    deployment: dict[str, Any]
    live: LiveView
    chart: PsiChart
    monitoring: list[tuple[datetime, str, str]]


def performance_of(endpoint_url: str) -> tuple[dict[str, Any] | None, str | None]:
    """The endpoint's live figures, or why they could not be read."""
    try:
        with PredictionClient(endpoint_url, timeout=3.0) as client:
            return client.performance(), None
    except PredictionError as error:
        return None, f"the endpoint answered {error.status_code}"
    except Exception as error:  # any transport failure: the page still shows the rest
        return None, f"unreachable: {type(error).__name__}"


def deployment_view(timeline: Timeline, live: LiveView) -> DeploymentView:
    """An endpoint with its figures and its pipeline's drift history."""
    deployment = live.deployment
    pipeline = timeline.pipelines.get(deployment["pipeline"])
    points = list(pipeline.drift) if pipeline else []
    monitoring = [
        (
            e.occurred_at,
            type(e).__name__,
            getattr(e, "reason", None) or ", ".join(getattr(e, "drifted_features", [])),
        )
        for e in (pipeline.monitoring if pipeline else [])
    ]
    return DeploymentView(deployment, live, psi_chart(points), monitoring[-20:])


def registered_version(arrival: Arrival) -> int | None:
    """The model version an arrival registered, if it got that far."""
    event = arrival.event_of(ModelRegistered)
    return event.version if isinstance(event, ModelRegistered) else None
