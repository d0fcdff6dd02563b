"""``conveyor data``: publish a data arrival."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, errors, print_json
from shared.clients.events import publish_data_arrival
from shared.clients.upload import ProgressBar
from shared.spec_store import UnknownPipelineError

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
