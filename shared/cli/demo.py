"""``conveyor demo``: the main job end to end, on scikit-learn's breast-cancer data.

Starts what is not running, applies a pipeline spec, uploads the data and publishes
DataArrived, shows each stage as its event arrives, then calls the endpoint that the chain
deployed and prints a real prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from dataclasses import dataclass, field

import click
import httpx
from opentelemetry import propagate
from rich.live import Live
from rich.table import Table
from sklearn.datasets import load_breast_cancer

from infra import InfraError
from infra import stack as infrastructure
from infra.services import start_services
from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json
from shared.clients.events import EventWatcher, publish_data_arrival
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import (
    DatasetRejected,
    DatasetValidated,
    DeploymentFailed,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
    ModelTrained,
    TrainingFailed,
)
from shared.pipeline_spec import PipelineSpec
from shared.telemetry import setup_telemetry

PIPELINE = "demo-breast-cancer"
STAGES: tuple[tuple[str, type[Event], tuple[type[Event], ...]], ...] = (
    ("validate the dataset", DatasetValidated, (DatasetRejected,)),
    ("train a candidate", ModelTrained, (TrainingFailed,)),
    ("evaluate it", ModelEvaluated, ()),
    ("register it", ModelRegistered, ()),
    ("approve it", ModelApproved, (ModelRejected,)),
    ("deploy it", ModelDeployed, (DeploymentFailed,)),
)
SPEC = {
    "name": PIPELINE,
    "target": "target",
    "task": "classification",
    "estimator": {
        "path": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 500},
        "search": {"kind": "grid", "space": {"C": [0.1, 1.0, 10.0]}, "folds": 5},
    },
    "gates": [{"metric": "accuracy", "min": 0.9}, {"metric": "roc_auc", "min": 0.95}],
    "approval": "auto",
    "deployment": {"realtime": True, "batch": True},
}


@dataclass
class Progress:
    """When each stage finished, for the live display."""

    started: float = field(default_factory=time.monotonic)
    finished: dict[str, float] = field(default_factory=dict)
    failed: str | None = None

    def table(self) -> Table:
        """The stages with the time each took."""
        table = Table(title=f"Conveyor demo: {PIPELINE}", title_justify="left")
        for column in ("stage", "event", "took"):
            table.add_column(column)
        previous = self.started
        for name, event_type, _ in STAGES:
            done = self.finished.get(name)
            if done is not None:
                table.add_row(f"[green]✓[/] {name}", event_type.__name__, f"{done - previous:.1f}s")
                previous = done
            elif self.failed and self.failed.startswith(name):
                table.add_row(f"[red]✗[/] {name}", self.failed, "")
            else:
                table.add_row(f"[dim]… {name}[/]", "", f"[dim]{time.monotonic() - previous:.0f}s[/]")
        return table


@click.command()
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the whole chain.")
@pass_cli
def demo(cli: CliContext, timeout: float) -> None:
    """Run the main job end to end and print a real prediction (exit 0 only if one came back)."""
    # With --json, progress goes to stderr and stdout carries only the result.
    with contextlib.redirect_stdout(sys.stderr) if cli.json_output else contextlib.nullcontext():
        try:
            with console.status("starting Kafka, MinIO and the services (a first start builds them)"):
                cli.settings = infrastructure.up(cli.settings)
                start_services(cli.settings)
        except InfraError as error:
            raise UserError(str(error)) from None
        applied = cli.specs.apply(PipelineSpec.from_mapping(SPEC))
        console.print(f"pipeline [bold]{PIPELINE}[/]: spec {applied.version}")
        console.print(f"console: {cli.settings.console_base_url}", highlight=False)
        result = asyncio.run(_run(cli, timeout=timeout))
    if cli.json_output:
        print_json(result)
        return
    console.print(f"\nendpoint {result['endpoint_url']} answered for one row of the data set:")
    console.print(
        f"  prediction [bold]{result['prediction']}[/] (actual {result['actual']})", highlight=False
    )
    console.print(f"  probabilities {result['probabilities']}", highlight=False)
    console.print(
        f"  model version {result['version']}, prediction id {result['prediction_id']}", highlight=False
    )
    console.print(f"  trace id {result['trace_id']}", highlight=False)
    console.print(f"\nwatch it in the console: {result['console_url']}", highlight=False)


async def _run(cli: CliContext, *, timeout: float) -> dict[str, object]:
    frame = load_breast_cancer(as_frame=True).frame
    watcher = EventWatcher(cli.settings, [t.topic for _, t, fails in STAGES for t in (t, *fails)])
    await watcher.start()
    telemetry = setup_telemetry("cli", cli.settings)
    tracer = telemetry.tracer_provider.get_tracer("conveyor.demo")
    try:
        with tracer.start_as_current_span("conveyor demo") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            arrival = await publish_data_arrival(
                cli.settings,
                pipeline=PIPELINE,
                data=frame.to_csv(index=False).encode(),
                filename="breast_cancer.csv",
                producer="cli",
            )
            console.print(f"published DataArrived {arrival.uri}", highlight=False)
            deployed = await _follow(watcher, arrival.correlation_id, timeout=timeout)
            row = frame.drop(columns=["target"]).iloc[0].to_dict()
            headers: dict[str, str] = {}
            propagate.inject(headers)  # the first prediction joins the arrival's trace
            with PredictionClient(
                deployed.endpoint_url,
                client=httpx.Client(base_url=deployed.endpoint_url, headers=headers, timeout=30),
            ) as client:
                try:
                    response = client.predict(row)
                except PredictionError as error:
                    raise UserError(f"the endpoint refused the prediction: {error}") from None
    finally:
        await watcher.stop()
        telemetry.shutdown()
    prediction = response.predictions[0]
    return {
        "pipeline": PIPELINE,
        "endpoint_url": deployed.endpoint_url,
        "version": response.version,
        "prediction": prediction.prediction,
        "probabilities": prediction.probabilities,
        "prediction_id": prediction.prediction_id,
        "actual": int(frame["target"].iloc[0]),
        "trace_id": trace_id,
        "correlation_id": str(arrival.correlation_id),
        "console_url": f"{cli.settings.console_base_url}/arrivals/{arrival.correlation_id}",
    }


async def _follow(watcher: EventWatcher, correlation_id: uuid.UUID, *, timeout: float) -> ModelDeployed:
    progress = Progress()
    deadline = time.monotonic() + timeout
    with Live(progress.table(), console=console, refresh_per_second=4, transient=False) as live:
        for name, wanted, failures in STAGES:
            while True:
                found = watcher.events(wanted, correlation_id=correlation_id)
                failed = [e for f in failures for e in watcher.events(f, correlation_id=correlation_id)]
                if failed:
                    progress.failed = f"{name}: {type(failed[0]).__name__}"
                    live.update(progress.table())
                    raise UserError(f"the chain stopped at '{name}': {failed[0].model_dump_json()[:800]}")
                if found:
                    progress.finished[name] = time.monotonic()
                    live.update(progress.table())
                    break
                if time.monotonic() > deadline:
                    raise UserError(
                        f"no {wanted.__name__} within {timeout:.0f}s; see the logs with conveyor status"
                    )
                live.update(progress.table())
                await asyncio.sleep(0.1)
    deployed = watcher.events(ModelDeployed, correlation_id=correlation_id)[0]
    return deployed
