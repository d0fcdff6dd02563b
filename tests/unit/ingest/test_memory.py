"""Ingest's process allocates Arrow's memory through malloc, with one malloc arena per core."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import services.ingest
from services.ingest.memory import ARENA_VARIABLE, POOL_VARIABLE

BACKEND = (
    "from services.ingest.memory import configure_memory;"
    "configure_memory();"
    "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"
)
# Threads that each hold a small malloc block at once (one from an arena, not from mmap), then
# glibc's own report of the process's arenas ("heaps"), counted while they still hold them.
ARENAS = """
import ctypes, os, sys, tempfile, threading
if sys.argv[1] == "configured":
    from services.ingest.memory import configure_memory
    configure_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
threads = len(os.sched_getaffinity(0)) + 4
allocated, counted = threading.Barrier(threads + 1), threading.Barrier(threads + 1)
def hold():
    block = libc.malloc(65536)
    allocated.wait()
    counted.wait()
    libc.free(block)
started = [threading.Thread(target=hold) for _ in range(threads)]
for thread in started:
    thread.start()
allocated.wait()
report = tempfile.NamedTemporaryFile(suffix=".xml", delete=False).name
stream = libc.fopen(report.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
counted.wait()
for thread in started:
    thread.join()
print(open(report).read().count("<heap nr="))
os.unlink(report)
"""
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")


def fresh(code: str, *args: str, **env: str) -> str:
    """What a fresh interpreter prints, without the variables these tests set themselves."""
    environment = {k: v for k, v in os.environ.items() if k not in (POOL_VARIABLE, ARENA_VARIABLE)} | env
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=environment, check=True
    )
    return done.stdout.strip()


def test_malloc_becomes_arrows_allocator() -> None:
    assert fresh(BACKEND) == "system"


def test_an_operators_choice_of_arrow_allocator_is_kept() -> None:
    assert fresh(BACKEND, **{POOL_VARIABLE: "mimalloc"}) == "mimalloc"


@glibc_only
def test_threads_share_one_malloc_arena_per_core() -> None:
    cores = len(os.sched_getaffinity(0))
    assert int(fresh(ARENAS, "default")) > cores  # glibc's default: a new arena per new thread
    assert int(fresh(ARENAS, "configured")) <= cores


@glibc_only
def test_an_operators_arena_limit_is_kept() -> None:
    assert int(fresh(ARENAS, "configured", **{ARENA_VARIABLE: "1"})) == 1


def test_the_entry_point_configures_memory_before_importing_anything_that_loads_arrow() -> None:
    entry = Path(services.ingest.__file__).with_name("__main__.py")
    statements = ast.parse(entry.read_text()).body[1:]  # after the docstring
    first_import, call = statements[0], statements[1]
    assert isinstance(first_import, ast.ImportFrom) and first_import.module == "services.ingest.memory"
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    assert ast.unparse(call.value.func) == "configure_memory"
