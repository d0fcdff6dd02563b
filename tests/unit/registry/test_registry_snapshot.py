"""A snapshot holds a folded group exactly, and refuses to stand for any other group or entry."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.registry.model_group import ModelGroup
from services.registry.snapshot import FORMAT, GroupSnapshot, SnapshotMismatchError, decode, encode
from shared.storage import sha256_hex
from tests.unit.registry.entries import history

# The shape of what a snapshot of format 2 holds (its JSON schema without titles and descriptions).
SHAPE_OF_FORMAT_3 = "da5e9dc1edd60b737c77932c1eacdd3251a5ca487be3a02d045393b6d377b94f"


def folded(pipeline: str, versions: int) -> ModelGroup:
    group = ModelGroup(pipeline)
    for entry in history(versions):
        group.apply(entry)
    return group


def test_a_snapshot_gives_back_the_group_it_was_taken_of() -> None:
    group = folded("churn", 12)
    assert {v.status for v in group.versions.values()} == {"Approved", "Rejected"}
    assert [d.until is None for d in group.deployments] == [False, False, True]

    restored = decode(encode(group), pipeline="churn", sequence=group.entries)

    assert restored == group
    assert restored is not group
    assert restored.champion() == group.champion()
    assert restored.next_version == 13
    # Taken again from what it gave back, it has the very same bytes: writing it twice is no conflict.
    assert encode(restored) == encode(group)


def test_a_snapshot_is_refused_for_another_group_or_entry_or_format() -> None:
    group = folded("churn", 3)
    body = encode(group)
    with pytest.raises(SnapshotMismatchError):
        decode(body, pipeline="fraud", sequence=group.entries)
    with pytest.raises(SnapshotMismatchError):
        decode(body, pipeline="churn", sequence=group.entries + 1)

    relabelled = json.loads(body)
    relabelled["sequence"] = group.entries - 1  # a sequence that is not the group's own entry count
    with pytest.raises(SnapshotMismatchError):
        decode(json.dumps(relabelled).encode(), pipeline="churn", sequence=group.entries - 1)

    later_format = {**json.loads(body), "format": FORMAT + 1}
    with pytest.raises(ValidationError):
        decode(json.dumps(later_format).encode(), pipeline="churn", sequence=group.entries)
    with pytest.raises(ValidationError):
        decode(body[: len(body) // 2], pipeline="churn", sequence=group.entries)


def _shape(schema: object) -> object:
    """A JSON schema without its prose: what a stored snapshot must match."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in ("title", "description")}
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    return schema


def test_the_snapshot_format_is_raised_when_what_it_holds_changes_shape() -> None:
    shape = json.dumps(_shape(GroupSnapshot.model_json_schema()), sort_keys=True).encode()
    assert (FORMAT, sha256_hex(shape)) == (3, SHAPE_OF_FORMAT_3), (
        "ModelGroup (or an entry it holds) changed shape: snapshots written before would be read "
        "wrongly. Raise services.registry.snapshot.FORMAT, then pin the new shape here."
    )
