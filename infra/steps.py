"""One progress line per step of a start (Python environment, Kafka jars, MinIO build, each server).

A first start runs tools that print thousands of lines (every Go package MinIO compiles, every
jar Maven resolves). Their output goes to a log file instead; the terminal gets the step's name
when it begins and its duration when it ends, on one line, and the log's path when it fails.

Standard library only: the Makefile runs this file with the system Python before the virtual
environment exists (``python3 infra/steps.py TITLE --log FILE -- COMMAND...``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

WIDTH = 48
TAIL_LINES = 15
# Build tools colour their output even into a pipe; the codes would clutter logs and errors.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class StepError(RuntimeError):
    """A step failed; the message names the log that holds its whole output."""


def duration(seconds: float) -> str:
    """``4.2s`` under a minute, ``3m07s`` above."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


@contextlib.contextmanager
def step(title: str, *, out: TextIO | None = None) -> Iterator[None]:
    """One line for the block: ``title .... 12.3s``, or ``failed after 12.3s`` if it raises.

    On a terminal the title shows while the step runs; into a pipe, a log or a console that draws
    its own spinner (the CLI's), the line is written whole when the step ends.
    """
    stream = out or sys.stdout
    live = isinstance(stream, io.TextIOWrapper) and stream.isatty()
    lead = f"{title} {'.' * max(2, WIDTH - len(title))} "
    if live:
        stream.write(lead)
        stream.flush()
    started = time.monotonic()
    try:
        yield
    except BaseException:
        stream.write(f"{'' if live else lead}failed after {duration(time.monotonic() - started)}\n")
        stream.flush()
        raise
    stream.write(f"{'' if live else lead}{duration(time.monotonic() - started)}\n")
    stream.flush()


def done(title: str, outcome: str, *, out: TextIO | None = None) -> None:
    """One line for a step that had nothing to do (``kafka ..... already running``)."""
    stream = out or sys.stdout
    stream.write(f"{title} {'.' * max(2, WIDTH - len(title))} {outcome}\n")
    stream.flush()


def run_logged(
    argv: Sequence[str],
    *,
    title: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    out: TextIO | None = None,
) -> None:
    """Run a command as one step, its whole output appended to ``log``; fail naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with step(title, out=out), log.open("a") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        try:
            result = subprocess.run(
                list(argv),
                env={**os.environ, **(env or {})},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except FileNotFoundError as error:
            raise StepError(f"{title}: {error.filename} is not installed (log: {log})") from None
        if result.returncode != 0:
            raise StepError(f"{title} failed (exit {result.returncode}); full output in {log}\n{tail(log)}")


def tail(log: Path, *, lines: int = TAIL_LINES) -> str:
    """The last lines of a log, colour codes removed, indented under the error."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return "\n".join(f"  | {_ANSI_ESCAPE.sub('', line)}" for line in text)


def main(argv: Sequence[str] | None = None) -> int:
    """``steps.py TITLE --log FILE -- COMMAND...``: run COMMAND as one step (for the Makefile)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="infra/steps.py", usage="%(prog)s TITLE --log FILE -- COMMAND...")
    parser.add_argument("title")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no command to run after --")
    try:
        run_logged(command, title=args.title, log=args.log)
    except StepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
