"""How the CLI talks to people and scripts: tables, JSON, and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


class UserError(click.ClickException):
    """A mistake the user can fix (an unknown pipeline, a bad file): one line, exit code 1."""

    def show(self, file: Any = None) -> None:
        """Print the message without a traceback."""
        errors.print(f"[bold red]error:[/] {self.message}", highlight=False)


def print_json(value: Any) -> None:
    """Machine-readable output for ``--json``."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table for people."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def user_errors(*kinds: type[BaseException]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn the named exceptions into one-line errors instead of tracebacks."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except kinds as error:
                raise UserError(str(error)) from error

        return run

    return decorate
