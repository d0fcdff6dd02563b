"""Lineage: what a model was trained with, and the ids derived from it."""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import re
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

_DISTRIBUTION = "conveyor"
_LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "pydantic")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def derive_run_id(*, dataset_version: str, spec_version: str, code_version: str) -> str:
    """The training run's id: the same inputs always give the same id."""
    inputs = json.dumps([dataset_version, spec_version, code_version])
    return "run-" + hashlib.sha256(inputs.encode()).hexdigest()[:16]


def code_version() -> str:
    """The conveyor version, with the short git commit when the source is a checkout."""
    commit = git_commit()
    return f"{package_version()}+g{commit[:12]}" if commit else package_version()


def package_version() -> str:
    """The installed conveyor distribution's version."""
    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def environment_record() -> dict[str, Any]:
    """Where and with what a model is trained: interpreter, libraries, host, image, commit."""
    return copy.deepcopy(_environment())


@cache
def _environment() -> dict[str, Any]:
    # Once per process: what a process runs does not change once imported (a package upgraded
    # meanwhile is not the one loaded), and scanning every distribution and asking git took 0.16 s
    # of every training run.
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "libraries": {name: _version_of(name) for name in _LIBRARIES},
        "packages": installed_packages(),
        "git_commit": git_commit(),
        "git_dirty": _git_dirty(),
        "conveyor_version": package_version(),
        "code_version": code_version(),
    }


def installed_packages() -> list[str]:
    """Every installed distribution as ``name==version``, sorted by name."""
    found = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return sorted(found, key=str.lower)


@cache
def git_commit() -> str | None:
    """The commit the source was checked out at, or None outside a git work tree."""
    out = _git("rev-parse", "HEAD")
    return out if out and re.fullmatch(r"[0-9a-f]{40}", out) else None


def _git_dirty() -> bool | None:
    """Whether the work tree has uncommitted changes (the commit alone does not name the code)."""
    if git_commit() is None:
        return None
    out = _git("status", "--porcelain", "--untracked-files=no")
    return None if out is None else bool(out)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=_SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
