"""``conveyor pipeline``: check, apply, list and show pipeline specs."""

from __future__ import annotations

from pathlib import Path

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json, print_table, user_errors
from shared.pipeline_spec import PipelineSpec, SpecError
from shared.spec_store import UnknownPipelineError


@click.group()
def pipeline() -> None:
    """Pipeline specs: what to do with a pipeline's data."""


@pipeline.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@pass_cli
def apply(cli: CliContext, spec_file: Path) -> None:
    """Validate SPEC_FILE (YAML) and store it as the pipeline's current spec."""
    spec = _read_spec(spec_file)
    applied = cli.specs.apply(spec)
    if cli.json_output:
        print_json(
            {"name": applied.name, "version": applied.version, "uri": applied.uri, "created": applied.created}
        )
        return
    verb = "created" if applied.created else "unchanged (already stored)"
    console.print(f"pipeline [bold]{applied.name}[/]: spec {applied.version} {verb}")


@pipeline.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@pass_cli
def check(cli: CliContext, spec_file: Path) -> None:
    """Validate SPEC_FILE (YAML) as apply would, without storing it (no server needed)."""
    spec = _read_spec(spec_file)
    if cli.json_output:
        print_json({"name": spec.name, "version": spec.version, "valid": True})
        return
    console.print(f"{spec_file}: pipeline [bold]{spec.name}[/], spec {spec.version} is valid")


def _read_spec(spec_file: Path) -> PipelineSpec:
    if not spec_file.is_file():
        raise UserError(f"{spec_file}: no such file")
    try:
        return PipelineSpec.from_yaml(spec_file.read_text())
    except SpecError as error:
        raise UserError(
            f"{spec_file} is not a valid pipeline spec:\n  " + "\n  ".join(error.problems)
        ) from None


@pipeline.command("list")
@pass_cli
def list_pipelines(cli: CliContext) -> None:
    """Every pipeline with a spec."""
    rows = []
    for name in cli.specs.names():
        spec = cli.specs.current(name)
        rows.append(
            {
                "name": name,
                "version": spec.version,
                "task": spec.task,
                "target": spec.target,
                "estimator": spec.estimator.path,
                "approval": spec.approval,
            }
        )
    if cli.json_output:
        print_json(rows)
    else:
        columns = ["name", "version", "task", "target", "estimator", "approval"]
        print_table("Pipelines", columns, ([row[c] for c in columns] for row in rows))


@pipeline.command()
@click.argument("name")
@pass_cli
@user_errors(UnknownPipelineError)
def show(cli: CliContext, name: str) -> None:
    """The current spec of pipeline NAME, as YAML."""
    spec = cli.specs.current(name)
    if cli.json_output:
        print_json({"version": spec.version, "spec": spec.model_dump(mode="json")})
    else:
        console.print(f"# {spec.name} {spec.version}", highlight=False)
        console.print(spec.to_yaml(), highlight=False, markup=False)
