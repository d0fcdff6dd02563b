"""Command line: ``python -m infra up|down|status`` (what `make up` and `make down` run).

``python -m infra kafka-acls`` prints the ACLs of SASL mode as kafka-acls.sh commands, for a Kafka
that Conveyor does not start (docker-compose's, Strimzi, a managed one).

``python -m infra minio-users`` creates the buckets and each service's MinIO user, with the keys
given in CONVEYOR_MINIO_<SERVICE>_ACCESS_KEY / _SECRET_KEY, on a MinIO that Conveyor does not start
(docker-compose's init step); the root keys come from CONVEYOR_MINIO_ACCESS_KEY / _SECRET_KEY.
"""

from __future__ import annotations

import argparse
import os
import sys

from infra.kafka_access import acl_commands
from infra.minio_users import provision_from_environment
from infra.process import InfraError
from infra.stack import ServerStatus, down, status, up
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Run one command against the servers of the configured state directory."""
    parser = argparse.ArgumentParser(
        prog="python -m infra", description="Start, stop or report the local Kafka and MinIO servers."
    )
    parser.add_argument("command", choices=["up", "down", "status", "kafka-acls", "minio-users"])
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds each server gets to become ready"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        if args.command == "up":
            up(settings, timeout=args.timeout)
        elif args.command == "down":
            down(settings)
        elif args.command == "kafka-acls":
            print("\n".join(acl_commands(settings.bootstrap_servers)))
        elif args.command == "minio-users":
            print("\n".join(provision_from_environment(settings, os.environ)))
        else:
            rows = status(settings)
            print(format_status(rows))
            return 0 if all(row.healthy for row in rows) else 1
    except InfraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def format_status(rows: list[ServerStatus]) -> str:
    """A small aligned table: name, pid, address, healthy."""
    table = [("NAME", "PID", "ADDRESS", "HEALTHY")] + [
        (row.name, str(row.pid or "-"), row.address, "yes" if row.healthy else "no") for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


if __name__ == "__main__":
    sys.exit(main())
