"""The deployment record: which versions exist, which is active, what a rollback returns to."""

from __future__ import annotations

import pytest

from services.deploy.records import DeploymentRecord
from tests.unit.deploy.builders import approval, approved


def _record(*versions: int) -> DeploymentRecord:
    record = DeploymentRecord(pipeline="churn", port=8200)
    for minutes, version in enumerate(versions):
        record = record.approved(approved(version, minutes=minutes), activate=True)
    return record


def test_approving_activates_and_remembers_the_order() -> None:
    record = _record(1, 2, 4)
    assert (record.active, record.order, sorted(record.versions)) == (4, [1, 2, 4], [1, 2, 4])
    assert record.current() is not None and record.current().version == 4  # type: ignore[union-attr]


def test_rollback_walks_back_through_the_approvals() -> None:
    record = _record(1, 2, 4)
    assert record.previous().version == 2  # type: ignore[union-attr]
    record = record.rolled_back()
    assert (record.active, record.previous().version) == (2, 1)  # type: ignore[union-attr]
    record = record.rolled_back()
    assert record.active == 1 and record.previous() is None
    with pytest.raises(LookupError):
        record.rolled_back()


def test_handled_and_older_approvals_are_superseded() -> None:
    record = _record(1, 2)
    handled = approved(2, minutes=1)
    assert record.superseded(approval(2).model_copy(update={"event_id": handled.approval_event_id}))
    assert record.superseded(approval(3, minutes=0))  # older than the active version's approval
    assert not record.superseded(approval(3, minutes=5))


def test_a_batch_uses_the_version_asked_for_else_the_active_else_the_latest() -> None:
    record = _record(1, 2)
    assert record.batch_version(1).version == 1  # type: ignore[union-attr]
    assert record.batch_version(None).version == 2  # type: ignore[union-attr]
    assert record.batch_version(9) is None
    batch_only = DeploymentRecord(pipeline="churn", port=8200).approved(approved(3), activate=False)
    assert batch_only.active is None and batch_only.batch_version(None).version == 3  # type: ignore[union-attr]


def test_a_version_is_known_before_it_serves() -> None:
    record = _record(1).knowing(approved(2, minutes=1))
    assert sorted(record.versions) == [1, 2] and record.active == 1 and record.order == [1]


def test_records_round_trip_as_json() -> None:
    record = _record(1, 2).rolled_back()
    assert DeploymentRecord.model_validate_json(record.model_dump_json()) == record
