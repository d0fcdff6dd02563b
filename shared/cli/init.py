"""``conveyor init``: a new pipeline project from a template."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import TypeAdapter, ValidationError

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json
from shared.events.envelope import PipelineName
from shared.project_templates import SPEC_FILE, TEMPLATES, ProjectExistsError, write_project


@click.command()
@click.argument("name")
@click.option(
    "--template", type=click.Choice(sorted(TEMPLATES)), required=True, help="The task to start from."
)
@click.option(
    "--directory", type=click.Path(path_type=Path), help="Where to write it (default: ./NAME; new or empty)."
)
@pass_cli
def init(cli: CliContext, name: str, template: str, directory: Path | None) -> None:
    """Write a ready project for pipeline NAME: spec, sample data, README and CI workflow."""
    try:
        TypeAdapter(PipelineName).validate_python(name)
    except ValidationError:
        raise UserError(
            f"{name!r} is not a pipeline name: lower-case letters, digits, '-' and '_', at most 63"
        ) from None
    target = directory if directory is not None else Path(name)
    try:
        written = write_project(target, name=name, template=template)
    except ProjectExistsError as error:
        raise UserError(str(error)) from None
    if cli.json_output:
        print_json(
            {"name": name, "template": template, "directory": str(target), "files": [str(p) for p in written]}
        )
        return
    console.print(f"project [bold]{name}[/] ({template}) written to {target}:", highlight=False)
    for path in written:
        console.print(f"  {path}", highlight=False)
    console.print(
        f"next: cd {target} && conveyor pipeline apply {SPEC_FILE} (see README.md)", highlight=False
    )
