"""Ingest's process allocates Arrow's memory through malloc."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import services.ingest
from services.ingest.memory import POOL_VARIABLE

CHECK = (
    "from services.ingest.memory import allocate_arrow_through_malloc;"
    "allocate_arrow_through_malloc();"
    "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
)


def backend(**env: str) -> str:
    """Arrow's default allocator in a fresh interpreter that called the helper first."""
    environment = {k: v for k, v in os.environ.items() if k != POOL_VARIABLE} | env
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=environment, check=True
    )
    return done.stdout.strip()


def test_malloc_becomes_arrows_allocator() -> None:
    assert backend() == "system"


def test_an_operators_choice_is_kept() -> None:
    assert backend(**{POOL_VARIABLE: "mimalloc"}) == "mimalloc"


def test_the_entry_point_chooses_before_importing_anything_that_loads_arrow() -> None:
    entry = Path(services.ingest.__file__).with_name("__main__.py")
    statements = ast.parse(entry.read_text()).body[1:]  # after the docstring
    first_import, call = statements[0], statements[1]
    assert isinstance(first_import, ast.ImportFrom) and first_import.module == "services.ingest.memory"
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    assert ast.unparse(call.value.func) == "allocate_arrow_through_malloc"
