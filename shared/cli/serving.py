"""``conveyor predict``, ``conveyor batch`` and ``conveyor deployments``: using what is served."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import pandas as pd
from pydantic import ValidationError

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json, print_table, user_errors
from shared.cli.releases import release, release_summary
from shared.clients.deploy import DeployClient
from shared.clients.events import EventWatcher, upload_to_landing
from shared.clients.registry import ApiError
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import BatchPredictionCompleted, BatchPredictionFailed, BatchPredictionRequested
from shared.messaging import KafkaEventPublisher, TransientError, create_broker
from shared.secrets import approver_token

api_errors = user_errors(ApiError, TransientError, PredictionError)


def _deploy(cli: CliContext, token: str | None = None) -> DeployClient:
    return DeployClient(cli.settings.deploy_base_url, token=token or approver_token(cli.settings))


@click.group(invoke_without_command=True)
@click.pass_context
def deployments(ctx: click.Context) -> None:
    """Where each pipeline is served (``rollback`` to serve the previous version again)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_deployments)


@deployments.command("list")
@pass_cli
@api_errors
def list_deployments(cli: CliContext) -> None:
    """Every pipeline's endpoint and versions."""
    found = _deploy(cli).deployments()
    if cli.json_output:
        print_json(found)
        return
    rows = [
        [
            d["pipeline"],
            d["endpoint_url"],
            d["environment"],
            d["serving_version"],
            d["previous_version"],
            release_summary(d.get("release")),
        ]
        for d in found
    ]
    columns = ["pipeline", "endpoint", "environment", "serving", "previous", "release"]
    print_table("Deployments", columns, rows)


deployments.add_command(release)


@deployments.command()
@click.argument("pipeline")
@click.option("--token", envvar="CONVEYOR_API_TOKEN", help="An operator's bearer token.")
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_cli
@api_errors
def rollback(cli: CliContext, pipeline: str, token: str | None, reason: str) -> None:
    """Serve PIPELINE's previously approved version again, without failing a request."""
    with console.status(f"rolling {pipeline} back"):
        outcome = _deploy(cli, token).rollback(pipeline, reason=reason)
    if cli.json_output:
        print_json(outcome)
    else:
        console.print(f"{pipeline} serves version {outcome['version']} again at {outcome['endpoint_url']}")


@click.command()
@click.argument("pipeline")
@click.option("--row", "rows", multiple=True, help="One row as JSON, e.g. '{\"age\": 42}' (repeatable).")
@click.option(
    "--file", "file", type=click.Path(path_type=Path), help="Rows from a .json, .csv or .parquet file."
)
@pass_cli
@api_errors
def predict(cli: CliContext, pipeline: str, rows: tuple[str, ...], file: Path | None) -> None:
    """Predictions from PIPELINE's real-time endpoint."""
    records = _rows(rows, file)
    endpoint = _deploy(cli).deployment(pipeline)["endpoint_url"]
    with PredictionClient(endpoint) as client:
        response = client.predict(records)
    if cli.json_output:
        print_json(response.model_dump(mode="json"))
        return
    table = [
        [p.prediction, json.dumps(p.probabilities) if p.probabilities else "", p.prediction_id]
        for p in response.predictions
    ]
    print_table(f"{pipeline} v{response.version}", ["prediction", "probabilities", "prediction id"], table)


@click.command()
@click.argument("pipeline")
@click.argument("source")
@click.option("--version", type=int, help="A model version (default: the one serving).")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the job.")
@click.option(
    "--environment", default="production", show_default=True, help="The deploy service that scores."
)
@click.option("--token", envvar="CONVEYOR_API_TOKEN", help="An operator's bearer token.")
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="local: in the deploy service; spark: on a Spark cluster (Parquet input).",
)
@click.option("--master", help="The Spark master, spark://host:port (default: the deploy service's).")
@pass_cli
def batch(
    cli: CliContext,
    pipeline: str,
    source: str,
    version: int | None,
    timeout: float,
    environment: str,
    token: str | None,
    engine: str,
    master: str | None,
) -> None:
    """Score SOURCE (a local .csv/.parquet file, or an s3:// URI) with PIPELINE's model (operator role)."""
    cli.require("operator", action="run a batch job", target=f"{pipeline} {source}", token=token)
    if master is not None and engine != "spark":
        raise UserError("--master names a Spark master: give it with --engine spark")
    if not source.startswith("s3://"):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"{source}: no such file (or give an s3:// URI)")
        if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise UserError(f"{source}: batch jobs score .csv and .parquet files")
        with console.status(f"uploading {path.name}"):
            source = asyncio.run(asyncio.to_thread(upload_to_landing, cli.settings, pipeline, path))
    with console.status("scoring"):
        job = BatchJob(version=version, environment=environment, engine=engine, spark_master=master)
        outcome = asyncio.run(_run_batch(cli, pipeline, source, job, timeout))
    if isinstance(outcome, BatchPredictionFailed):
        raise UserError(f"batch job failed: {outcome.reason}")
    if cli.json_output:
        print_json(outcome.model_dump(mode="json"))
    else:
        console.print(
            f"{outcome.rows} rows scored by version {outcome.version} in {outcome.duration_seconds:.1f}s: "
            f"{outcome.output_uri}",
            highlight=False,
        )


@dataclass(frozen=True)
class BatchJob:
    """How the batch job is to run: which version, which deploy service, on which engine."""

    version: int | None
    environment: str
    engine: str = "local"
    spark_master: str | None = None


async def _run_batch(
    cli: CliContext, pipeline: str, source: str, job: BatchJob, timeout: float
) -> BatchPredictionCompleted | BatchPredictionFailed:
    topics = [BatchPredictionCompleted.topic, BatchPredictionFailed.topic]
    watcher = EventWatcher(cli.settings, topics)
    await watcher.start()
    broker = create_broker(cli.settings)
    await broker.connect()
    try:
        request = BatchPredictionRequested.first(
            producer="cli", pipeline=pipeline, input_uri=source, **asdict(job)
        )
        await KafkaEventPublisher(broker).publish(request)
        outcome = await watcher.wait_for(
            BatchPredictionCompleted,
            BatchPredictionFailed,
            correlation_id=request.correlation_id,
            timeout=timeout,
        )
    except AssertionError as error:
        raise UserError(str(error)) from None
    except ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"invalid batch request: {first['loc'][0]}: {first['msg']}") from None
    finally:
        await broker.stop()
        await watcher.stop()
    assert isinstance(outcome, BatchPredictionCompleted | BatchPredictionFailed)
    return outcome


def _rows(rows: tuple[str, ...], file: Path | None) -> list[dict[str, Any]]:
    if bool(rows) == bool(file):
        raise UserError("give rows with --row or a --file, not both or neither")
    if file is not None:
        if not file.is_file():
            raise UserError(f"{file}: no such file")
        suffix = file.suffix.lower()
        try:
            if suffix == ".json":
                loaded = json.loads(file.read_text())
                return loaded if isinstance(loaded, list) else [loaded]
            frame = pd.read_csv(file) if suffix == ".csv" else pd.read_parquet(file)
        except (ValueError, OSError) as error:
            raise UserError(f"{file}: cannot read rows: {error}") from None
        return [
            {str(k): (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")
        ]
    try:
        parsed = [json.loads(row) for row in rows]
    except json.JSONDecodeError as error:
        raise UserError(f"--row is not JSON: {error}") from None
    if not all(isinstance(row, dict) for row in parsed):
        raise UserError("each --row is a JSON object keyed by feature name")
    return parsed
