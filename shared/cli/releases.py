"""``conveyor deployments release``: a gradual release's state and windows, and an operator's say in it."""

from __future__ import annotations

from typing import Any

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import console, print_json, print_table, user_errors
from shared.clients.deploy import DeployClient
from shared.clients.registry import ApiError
from shared.messaging import TransientError
from shared.release import ReleaseSpec
from shared.secrets import approver_token

ACTIONS = ("pause", "resume", "promote", "abort")


def release_summary(release: dict[str, Any] | None) -> str:
    """One line for a deployment's release column (empty when none runs)."""
    if not release:
        return ""
    shares = _shares(release)
    step = min(release["step"], len(shares))
    return (
        f"{release['strategy']} v{release['version']} vs v{release['baseline']}: "
        f"window {step}/{len(shares)} at {shares[step - 1]:g}% ({release['status']})"
    )


@click.command("release")
@click.argument("pipeline")
@click.argument("action", required=False, type=click.Choice(ACTIONS))
@click.option("--token", envvar="CONVEYOR_API_TOKEN", help="An operator's bearer token (for an action).")
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_cli
@user_errors(ApiError, TransientError)
def release(cli: CliContext, pipeline: str, action: str | None, token: str | None, reason: str) -> None:
    """PIPELINE's release in progress and its judged windows; or pause, resume, promote or abort it."""
    client = DeployClient(cli.settings.deploy_base_url, token=token or approver_token(cli.settings))
    if action is not None:
        outcome = client.release(pipeline, action, reason=reason)
        if cli.json_output:
            print_json(outcome)
        else:
            console.print(f"{pipeline}: {action} done ({', '.join(outcome['events'])})", highlight=False)
        return
    found = client.deployment(pipeline).get("release")
    if cli.json_output:
        print_json(found)
        return
    if not found:
        console.print(f"{pipeline} has no release in progress", highlight=False)
        return
    console.print(release_summary(found), highlight=False)
    rows = [_window_row(window) for window in found["windows"]]
    columns = ["window", "share %", "requests c/b", "5xx c/b", "p99 ms c/b", "accuracy c/b", "PSI", "agree"]
    print_table("Windows judged (candidate / baseline)", columns, rows)


def _window_row(window: dict[str, Any]) -> list[Any]:
    mine, theirs = window["candidate"], window["baseline"]

    def pair(key: str, digits: int = 0) -> str:
        return "/".join("-" if side[key] is None else f"{side[key]:.{digits}f}" for side in (mine, theirs))

    return [
        window["step"],
        f"{window['share']:g}",
        pair("requests"),
        pair("errors"),
        pair("p99_ms", 1),
        pair("accuracy", 3),
        "-" if window["prediction_psi"] is None else f"{window['prediction_psi']:.3f}",
        "-" if window["agreement"] is None else f"{window['agreement']:.3f}",
    ]


def _shares(release: dict[str, Any]) -> list[float]:
    return ReleaseSpec.model_validate(release["spec"]).shares()
