"""Lineage records and derived ids."""

from __future__ import annotations

import re
from importlib import metadata

from services.train.lineage import (
    code_version,
    derive_run_id,
    environment_record,
    git_commit,
    package_version,
)

DATASET = "a" * 64


def test_run_id_is_deterministic_and_short() -> None:
    first = derive_run_id(dataset_version=DATASET, spec_version="spec-1", code_version="0.1.0")
    again = derive_run_id(dataset_version=DATASET, spec_version="spec-1", code_version="0.1.0")
    assert first == again
    assert re.fullmatch(r"run-[0-9a-f]{16}", first)


def test_run_id_changes_with_each_input() -> None:
    ids = {
        derive_run_id(dataset_version=DATASET, spec_version="spec-1", code_version="0.1.0"),
        derive_run_id(dataset_version="b" * 64, spec_version="spec-1", code_version="0.1.0"),
        derive_run_id(dataset_version=DATASET, spec_version="spec-2", code_version="0.1.0"),
        derive_run_id(dataset_version=DATASET, spec_version="spec-1", code_version="0.1.1"),
        # Joining without a separator would make these two the same.
        derive_run_id(dataset_version=DATASET, spec_version="spec-1a", code_version="b"),
        derive_run_id(dataset_version=DATASET, spec_version="spec-1", code_version="ab"),
    }
    assert len(ids) == 6


def test_code_version_is_the_package_version_plus_commit() -> None:
    version = code_version()
    assert version.startswith(package_version())
    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    if commit:
        assert version == f"{package_version()}+g{commit[:12]}"


def test_environment_record() -> None:
    record = environment_record()
    assert record["libraries"]["scikit-learn"] == metadata.version("scikit-learn")
    assert record["libraries"]["numpy"] == metadata.version("numpy")
    assert record["libraries"]["pandas"] == metadata.version("pandas")
    assert re.fullmatch(r"3\.\d+\.\d+", record["python"])
    assert record["host"]
    packages = record["packages"]
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in packages
    assert packages == sorted(packages, key=str.lower)
    assert all("==" in p for p in packages)
    assert record["conveyor_version"] == package_version()
    assert record["code_version"] == code_version()


def test_environment_record_is_taken_once_and_handed_out_as_copies() -> None:
    first = environment_record()
    first["packages"].append("changed==0")
    first["libraries"]["numpy"] = "changed"
    again = environment_record()
    assert "changed==0" not in again["packages"] and again["libraries"]["numpy"] == metadata.version("numpy")
