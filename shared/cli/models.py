"""``conveyor models``: the registry's model versions, their lineage, and decisions on them."""

from __future__ import annotations

import json

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import console, print_json, print_table, user_errors
from shared.clients.registry import ApiError
from shared.lineage import LineageRecord
from shared.messaging import TransientError
from shared.storage import IntegrityError, ObjectNotFoundError

STATUSES = click.Choice(["PendingManualApproval", "Approved", "Rejected"])
registry_errors = user_errors(ApiError, TransientError)


@click.group()
def models() -> None:
    """Model groups and versions in the registry."""


@models.command("list")
@click.argument("pipeline", required=False)
@click.option("--status", type=STATUSES, help="Only versions with this status.")
@pass_cli
@registry_errors
def list_models(cli: CliContext, pipeline: str | None, status: str | None) -> None:
    """Every model group, or the versions of PIPELINE."""
    registry = cli.registry()
    if pipeline is None:
        groups = registry.groups()
        if cli.json_output:
            print_json(groups)
            return
        rows = [
            [
                g["pipeline"],
                g["versions"],
                g["latest_version"],
                g["champion_version"],
                ", ".join(f"{env}: v{v}" for env, v in g["live"].items()),
            ]
            for g in groups
        ]
        print_table("Model groups", ["pipeline", "versions", "latest", "champion", "live"], rows)
        return
    versions = registry.versions(pipeline, status=status)
    if cli.json_output:
        print_json(versions)
        return
    rows = [
        [v["version"], v["status"], v["run_id"], v["registered_at"], _metrics(v["metrics"])] for v in versions
    ]
    print_table(f"{pipeline} versions", ["version", "status", "run", "registered", "metrics"], rows)


@models.command()
@click.argument("pipeline")
@click.argument("version", type=int)
@pass_cli
@registry_errors
def show(cli: CliContext, pipeline: str, version: int) -> None:
    """Everything the registry knows of one version."""
    detail = cli.registry().version(pipeline, version)
    if cli.json_output:
        print_json(detail)
        return
    console.print(f"[bold]{pipeline} v{version}[/] {detail['status']} (run {detail['run_id']})")
    print_table("Metrics", ["metric", "value"], sorted(detail["metrics"].items()))
    print_table(
        "Gates",
        ["gate", "passed", "value", "threshold"],
        [[g["gate"], g["passed"], g["value"], g["threshold"]] for g in detail["gates"]],
    )
    print_table(
        "Audit",
        ["action", "by", "at", "comment"],
        [[a["action"], a["by"], a["at"], a["comment"]] for a in detail["audit"]],
    )
    eligible = ", ".join(detail["eligible"]) or "none"
    console.print(f"environments {' → '.join(detail['environments'])}; may serve in: {eligible}")
    console.print(f"model {detail['model']['uri']} sha256 {detail['model']['sha256']}", highlight=False)


@models.command()
@click.argument("pipeline")
@click.argument("version", type=int)
@click.option("--comment", default="", help="Why, for the audit trail.")
@click.option(
    "--token", envvar="CONVEYOR_API_TOKEN", help="An approver's bearer token (default: `conveyor token`)."
)
@pass_cli
@registry_errors
def approve(cli: CliContext, pipeline: str, version: int, comment: str, token: str | None) -> None:
    """Approve a version that waits for manual approval."""
    _decide(cli, pipeline, version, approve=True, comment=comment, token=token)


@models.command()
@click.argument("pipeline")
@click.argument("version", type=int)
@click.option("--comment", default="", help="Why, for the audit trail.")
@click.option(
    "--token", envvar="CONVEYOR_API_TOKEN", help="An approver's bearer token (default: `conveyor token`)."
)
@pass_cli
@registry_errors
def reject(cli: CliContext, pipeline: str, version: int, comment: str, token: str | None) -> None:
    """Reject a version that waits for manual approval."""
    _decide(cli, pipeline, version, approve=False, comment=comment, token=token)


@models.command()
@click.argument("pipeline")
@click.argument("version", type=int)
@click.option("--to", "environment", required=True, help="The next environment, e.g. production.")
@click.option("--comment", default="", help="Why, for the audit trail.")
@click.option("--token", envvar="CONVEYOR_API_TOKEN", help="A token with the environment's role.")
@pass_cli
@registry_errors
def promote(
    cli: CliContext, pipeline: str, version: int, environment: str, comment: str, token: str | None
) -> None:
    """Let a version that served in one environment serve in the next."""
    detail = cli.registry(token).promote(pipeline, version, to=environment, comment=comment)
    if cli.json_output:
        print_json(detail)
    else:
        console.print(f"{pipeline} v{version} promoted to [bold]{environment}[/]")


@models.command()
@click.argument("pipeline")
@click.option("--environment", help="Only this environment.")
@click.option("--at", help="Only what was live at this time (ISO 8601 with a time zone).")
@pass_cli
@registry_errors
def history(cli: CliContext, pipeline: str, environment: str | None, at: str | None) -> None:
    """Which version was live in each environment, and when."""
    records = cli.registry().history(pipeline, environment=environment, at=at)
    if cli.json_output:
        print_json(records)
        return
    rows = [
        [r["environment"], r["version"], r["since"], r["until"] or "now", r["endpoint_url"]] for r in records
    ]
    print_table(
        f"{pipeline} promotion history", ["environment", "version", "since", "until", "endpoint"], rows
    )


@models.command()
@click.argument("pipeline")
@click.argument("version", type=int)
@pass_cli
@user_errors(ApiError, TransientError, IntegrityError, ObjectNotFoundError)
def lineage(cli: CliContext, pipeline: str, version: int) -> None:
    """Where a version came from: data, code, hyper-parameters, environment."""
    detail = cli.registry().version(pipeline, version)
    location = cli.store.locate(detail["lineage"]["lineage_uri"])
    record = LineageRecord.model_validate_json(cli.store.get_verified(location))
    if cli.json_output:
        print_json(record.model_dump(mode="json"))
        return
    environment = record.environment
    rows = [
        ["run", record.run_id],
        ["dataset version", record.dataset_version],
        ["dataset checkouts", f"conveyor data audit {pipeline} --version {record.dataset_version}"],
        ["raw data", record.dataset["raw"].uri if "raw" in record.dataset else ""],
        ["spec", f"{record.spec_version} ({record.spec_uri})"],
        ["code version", record.code_version],
        ["git commit", environment.get("git_commit") or "unknown"],
        ["estimator", record.estimator],
        ["hyper-parameters", json.dumps(record.hyperparameters)],
        [
            f"cv {record.cv_metric}",
            f"{record.cv_score:.4f} ({', '.join(f'{s:.4f}' for s in record.cv_scores)})",
        ],
        ["python", environment.get("python", "")],
        ["libraries", ", ".join(f"{k} {v}" for k, v in environment.get("libraries", {}).items())],
        ["training image", environment.get("training_image") or "none (a local process)"],
        ["host", environment.get("host", "")],
        ["trained", f"{record.started_at} in {record.training_seconds:.1f}s"],
        ["packages", f"{len(environment.get('packages', []))} recorded (--json lists them)"],
    ]
    print_table(f"{pipeline} v{version} lineage", ["", ""], rows)


def _decide(
    cli: CliContext, pipeline: str, version: int, *, approve: bool, comment: str, token: str | None
) -> None:
    detail = cli.registry(token).decide(pipeline, version, approve=approve, comment=comment)
    if cli.json_output:
        print_json(detail)
    else:
        console.print(f"{pipeline} v{version} is now [bold]{detail['status']}[/]")


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in sorted(metrics.items()))
