"""``conveyor``: the command line of the platform."""

from __future__ import annotations

import click

from shared.cli.context import CliContext
from shared.cli.data import data
from shared.cli.demo import demo
from shared.cli.dlq import dlq
from shared.cli.docs import docs
from shared.cli.events import events
from shared.cli.init import init
from shared.cli.models import models
from shared.cli.pipeline import pipeline
from shared.cli.serving import batch, deployments, predict
from shared.cli.stack import down, status, token, up
from shared.settings import Settings


@click.group()
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cli(ctx: click.Context, json_output: bool) -> None:
    """Conveyor: from data arrival to a served, monitored model."""
    ctx.obj = CliContext(settings=Settings(), json_output=json_output)


COMMANDS = (
    up,
    down,
    status,
    token,
    demo,
    pipeline,
    data,
    models,
    predict,
    batch,
    deployments,
    events,
    docs,
    dlq,
)
for group in COMMANDS:
    cli.add_command(group)
cli.add_command(init)


def main() -> None:
    """Entry point of the ``conveyor`` script."""
    cli(prog_name="conveyor")
