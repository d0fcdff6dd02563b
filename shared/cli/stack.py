"""``conveyor up|down|status``: Kafka, MinIO and the five services on this machine."""

from __future__ import annotations

import click

from infra import InfraError, process
from infra import stack as infrastructure
from infra.services import parse_replicas, service_servers, start_services, stop_services
from shared.cli.context import CliContext, pass_cli
from shared.cli.output import UserError, console, print_json, print_table


@click.command()
@click.option("--infra-only", is_flag=True, help="Only Kafka and MinIO, not the services.")
@click.option(
    "--brokers",
    type=click.IntRange(1, 5),
    default=None,
    help="Kafka brokers in one KRaft cluster (default CONVEYOR_KAFKA_BROKERS, 1).",
)
@click.option(
    "--replicas",
    default="",
    metavar="NAME=N,...",
    help="Processes per service in its consumer group, e.g. train=2,ingest=2 (not deploy).",
)
@pass_cli
def up(cli: CliContext, infra_only: bool, brokers: int | None, replicas: str) -> None:
    """Start Kafka, MinIO and the services (what already runs is left alone)."""
    try:
        counts = parse_replicas(replicas)
    except ValueError as error:
        raise UserError(f"--replicas: {error}") from None
    if brokers is not None:
        cli.settings = cli.settings.model_copy(update={"kafka_brokers": brokers})
    try:
        with console.status("starting Kafka and MinIO (the first start builds or downloads them)"):
            infrastructure.up(cli.settings)
        if not infra_only:
            with console.status("starting the services"):
                start_services(cli.settings, replicas=counts)
    except InfraError as error:
        raise UserError(str(error)) from None
    _show_status(cli)


@click.command()
@click.option("--services-only", is_flag=True, help="Leave Kafka and MinIO running.")
@pass_cli
def down(cli: CliContext, services_only: bool) -> None:
    """Stop the services, then Kafka and MinIO, by process id; data stays."""
    stop_services(cli.settings)
    if not services_only:
        infrastructure.down(cli.settings)


@click.command()
@pass_cli
def status(cli: CliContext) -> None:
    """What runs, where, and whether it answers."""
    healthy = _show_status(cli)
    if not healthy:
        raise SystemExit(1)


def _show_status(cli: CliContext) -> bool:
    rows = [
        {"name": s.name, "pid": s.pid, "address": s.address, "healthy": s.healthy}
        for s in infrastructure.status(cli.settings)
    ]
    for server in service_servers(cli.settings):
        pid = process.running_pid(server)
        healthy = bool(pid and server.ready())
        rows.append({"name": server.name, "pid": pid, "address": server.address, "healthy": healthy})
    if cli.json_output:
        print_json(rows)
    else:
        print_table(
            f"Conveyor on this machine (logs in {cli.settings.state_dir / 'logs'})",
            ["name", "pid", "address", "healthy"],
            ([r["name"], r["pid"] or "-", r["address"], "yes" if r["healthy"] else "no"] for r in rows),
        )
    return all(r["healthy"] for r in rows)
