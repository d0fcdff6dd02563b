"""The README's commands and code exist: every ``conveyor`` command, ``make`` target and import."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import click
import pytest

from shared.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_every_conveyor_command_in_the_readme_exists() -> None:
    mentioned = set(re.findall(r"conveyor ([a-z]+)(?: ([a-z]+))?", README))
    assert mentioned, "the README names no conveyor command"
    for first, second in sorted(mentioned):
        command = cli.commands.get(first)
        assert command is not None, f"README mentions `conveyor {first}`, which does not exist"
        if second and isinstance(command, click.Group):
            assert second in command.commands, f"README mentions `conveyor {first} {second}`"


def test_every_make_target_in_the_readme_exists() -> None:
    targets = set(re.findall(r"make ([a-z-]+)", README))
    assert {"demo", "test"} <= targets
    for target in targets:
        assert re.search(rf"^{target}:", MAKEFILE, flags=re.MULTILINE), f"README mentions `make {target}`"


@pytest.mark.parametrize("block", python_blocks())
def test_python_examples_parse_and_their_imports_exist(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
