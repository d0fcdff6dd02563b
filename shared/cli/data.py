"""``conveyor data``: publish a data arrival; list, check out and audit stored dataset versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, errors, print_json, print_table, user_errors
from shared.clients.events import publish_data_arrival
from shared.clients.registry import ApiError
from shared.clients.upload import ProgressBar
from shared.messaging import TransientError
from shared.spec_store import UnknownPipelineError
from shared.storage import IntegrityError

MAX_SIZE = 2 * 1024**3


@click.group()
def data() -> None:
    """Datasets arriving for a pipeline."""


@data.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--pipeline", "pipeline_name", required=True, help="The pipeline the data is for.")
@pass_cli
def publish(cli: CliContext, file: Path, pipeline_name: str) -> None:
    """Upload FILE (CSV or Parquet) to the landing bucket and publish DataArrived."""
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    if file.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{file}: Conveyor ingests .csv and .parquet files")
    if file.stat().st_size > MAX_SIZE:
        raise UserError(f"{file}: larger than {MAX_SIZE // 1024**3} GiB")
    try:
        cli.specs.current(pipeline_name)
    except UnknownPipelineError as error:
        raise UserError(str(error)) from None
    with ProgressBar(errors, description=f"uploading {file.name}") as progress:
        event = asyncio.run(
            publish_data_arrival(
                cli.settings, pipeline=pipeline_name, data=file, producer="cli", progress=progress
            )
        )
    if cli.json_output:
        print_json(event.model_dump(mode="json"))
    else:
        console.print(f"published DataArrived for [bold]{pipeline_name}[/]: {event.uri}")
        console.print(f"correlation id {event.correlation_id}", highlight=False)


token_option = click.option(
    "--token", envvar="CONVEYOR_API_TOKEN", help="Your bearer token: the audit records its user."
)
dataset_errors = user_errors(ApiError, TransientError, IntegrityError)


@data.command()
@click.argument("pipeline")
@token_option
@pass_cli
@dataset_errors
def versions(cli: CliContext, pipeline: str, token: str | None) -> None:
    """The stored dataset versions of PIPELINE."""
    found = cli.datasets(token).versions(pipeline)
    if cli.json_output:
        print_json(found)
        return
    rows = [
        [v["dataset_version"], v["format"], v["accepted"], "latest" if v["latest"] else ""] for v in found
    ]
    print_table(f"{pipeline} dataset versions", ["version", "format", "accepted", ""], rows)


@data.command()
@click.argument("pipeline")
@click.argument("dataset_version", required=False)
@click.option("--reason", required=True, help="Why you take it: recorded in the audit.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Where to write it.")
@token_option
@pass_cli
@dataset_errors
def checkout(
    cli: CliContext,
    pipeline: str,
    dataset_version: str | None,
    reason: str,
    output: Path | None,
    token: str | None,
) -> None:
    """Download DATASET_VERSION of PIPELINE (default: the latest accepted), digest-verified and audited."""
    done = cli.datasets(token).checkout(
        pipeline, dataset_version=dataset_version, reason=reason, output=output
    )
    if cli.json_output:
        print_json(
            {"path": str(done.path), "dataset_version": done.dataset_version, "checkout_id": done.checkout_id}
        )
    else:
        console.print(
            f"{done.path} ({done.size_bytes} bytes, sha256 {done.dataset_version} verified)", highlight=False
        )
        console.print(f"checkout {done.checkout_id} recorded", highlight=False)


@data.command()
@click.argument("pipeline")
@click.option("--version", "dataset_version", help="Only checkouts of this dataset version.")
@token_option
@pass_cli
@dataset_errors
def audit(cli: CliContext, pipeline: str, dataset_version: str | None, token: str | None) -> None:
    """Who checked out PIPELINE's datasets, when and why."""
    entries = cli.datasets(token).audit(pipeline, dataset_version=dataset_version)
    if cli.json_output:
        print_json(entries)
        return
    rows = [[e["at"], e["user"], e["role"], e["dataset_version"][:12], e["reason"]] for e in entries]
    print_table(f"{pipeline} dataset checkouts", ["at", "user", "role", "version", "reason"], rows)
