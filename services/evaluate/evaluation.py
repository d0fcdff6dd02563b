"""Evaluate one candidate: verify, load and score it against the champion, then apply the gates.

The outcome is recorded per run, so a redelivered event gets the same verdict even after the
registry has since approved this very candidate as champion.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import Field

from services.evaluate.gates import apply_gates
from services.evaluate.loaded_models import LoadedModels
from services.evaluate.metrics import score_model
from services.evaluate.report import render_evaluation_report, render_plot
from shared.clients.registry import Champion
from shared.events import ArtifactRef, ChampionComparison, GateResult, ModelTrained
from shared.events.envelope import Frozen
from shared.model_format import UntrustedModelError
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, IntegrityError, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

PREFIX = "evaluations"


class Verdict(Frozen):
    """What ModelEvaluated reports beyond the candidate's identity."""

    metrics: dict[str, float]
    champion: ChampionComparison | None = None
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool
    report: ArtifactRef | None = None
    failure_reason: str | None = None


@dataclass(frozen=True)
class EvaluatePorts:
    """What evaluating needs from the outside world."""

    store: ArtifactStore
    specs: SpecStore
    bucket: str
    champion_of: Callable[[str], Champion | None]
    models: LoadedModels


def evaluate(ports: EvaluatePorts, trained: ModelTrained) -> Verdict:
    """The verdict on ``trained``: recorded if it exists, computed otherwise."""
    location = _verdict_location(ports, trained.pipeline, trained.run_id)
    try:
        return Verdict.model_validate_json(ports.store.get_verified(location))
    except ObjectNotFoundError:
        pass
    verdict = _judge(ports, trained)
    ports.store.put(location, verdict.model_dump_json().encode(), content_type="application/json")
    return verdict


def _judge(ports: EvaluatePorts, trained: ModelTrained) -> Verdict:
    try:
        # The digest is checked before a single byte is deserialised.
        model = ports.models.load(trained.model)
    except (IntegrityError, UntrustedModelError) as error:
        return Verdict(metrics={}, passed=False, failure_reason=f"{type(error).__name__}: {error}")
    spec = ports.specs.get(trained.pipeline, trained.spec_version)
    test = pd.read_parquet(io.BytesIO(ports.store.get(trained.test)))
    scores = score_model(model, test, spec=spec)

    comparison = None
    champion = ports.champion_of(trained.pipeline)
    if champion is not None and champion.run_id != trained.run_id:
        champion_model = ports.models.load(champion.model)
        champion_scores = score_model(champion_model, test, spec=spec)
        comparison = ChampionComparison(
            champion_version=champion.version, champion_metrics=champion_scores.metrics
        )
    gates = apply_gates(
        spec, metrics=scores.metrics, champion_metrics=comparison.champion_metrics if comparison else None
    )
    html = render_evaluation_report(
        scores,
        gates=gates,
        pipeline=trained.pipeline,
        run_id=trained.run_id,
        champion=comparison,
        plot_png=render_plot(scores),
    )
    report = _put_report(ports, trained, scores=scores.model_dump(mode="json"), html=html)
    return Verdict(
        metrics=scores.metrics,
        champion=comparison,
        gates=gates,
        passed=all(g.passed for g in gates),
        report=report,
    )


def _put_report(
    ports: EvaluatePorts, trained: ModelTrained, *, scores: dict[str, Any], html: str
) -> ArtifactRef:
    prefix = f"{_prefix(trained.pipeline, trained.run_id)}/report"
    put = ports.store.put_content_addressed
    page = put(html.encode(), bucket=ports.bucket, prefix=prefix, suffix=".html", content_type="text/html")
    body = json.dumps({"scores": scores, "html": page.uri}, indent=2).encode()
    return put(body, bucket=ports.bucket, prefix=prefix, suffix=".json", content_type="application/json")


def _prefix(pipeline: str, run_id: str) -> str:
    return f"{PREFIX}/{safe_segment(pipeline, what='pipeline')}/{safe_segment(run_id, what='run id')}"


def _verdict_location(ports: EvaluatePorts, pipeline: str, run_id: str) -> ObjectLocation:
    return ObjectLocation(ports.bucket, f"{_prefix(pipeline, run_id)}/verdict.json")
