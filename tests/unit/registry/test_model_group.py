"""A model group folded from its journal, and the status changes it allows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.registry.journal import VersionApproved, VersionRejected
from services.registry.model_group import ModelGroup, TransitionError
from tests.unit.registry.entries import T0, deployed, registered


def test_versions_are_numbered_in_order_and_known_by_run_id() -> None:
    group = ModelGroup("churn")
    assert group.next_version == 1
    group.apply(registered(1))
    group.apply(registered(2, run_id="run-x"))
    assert group.next_version == 3
    assert group.by_run_id == {"run-1": 1, "run-x": 2}
    assert group.versions[2].status == "PendingManualApproval"
    assert group.entries == 2


def test_only_pending_versions_can_be_decided() -> None:
    group = ModelGroup("churn")
    group.apply(registered(1))
    group.apply(registered(2))
    assert group.check_decision(1, approve=True).number == 1
    group.apply(VersionApproved(at=T0, version=1, by="alice", comment="looks good"))
    group.apply(VersionRejected(at=T0, version=2, by="bob", comment="biased"))
    with pytest.raises(TransitionError, match="it is Approved"):
        group.check_decision(1, approve=False)
    with pytest.raises(TransitionError, match=r"cannot approve .* it is Rejected"):
        group.check_decision(2, approve=True)
    with pytest.raises(LookupError):
        group.check_decision(9, approve=True)
    assert [(a.action, a.by, a.comment) for a in group.versions[2].audit] == [("rejected", "bob", "biased")]


def test_champion_is_the_latest_approved_version() -> None:
    group = ModelGroup("churn")
    for n in (1, 2, 3):
        group.apply(registered(n))
    assert group.champion() is None
    group.apply(VersionApproved(at=T0, version=1, by="a"))
    group.apply(VersionApproved(at=T0, version=2, by="a"))
    group.apply(VersionRejected(at=T0, version=3, by="a"))
    champion = group.champion()
    assert champion is not None and champion.number == 2


def test_promotion_history_answers_what_was_live_when() -> None:
    group = ModelGroup("churn")
    for n in (1, 2):
        group.apply(registered(n))
    group.apply(deployed(1, T0))
    group.apply(deployed(1, T0 + timedelta(minutes=1)))  # the same fact again changes nothing
    group.apply(deployed(2, T0 + timedelta(hours=1)))
    group.apply(deployed(1, T0 + timedelta(hours=2), environment="staging"))
    assert len(group.deployments) == 3
    live = group.live("local")
    assert live is not None and live.version == 2
    earlier = group.live("local", at=T0 + timedelta(minutes=30))
    assert earlier is not None and earlier.version == 1 and earlier.until == T0 + timedelta(hours=1)
    assert group.live("local", at=T0 - timedelta(seconds=1)) is None
    staging = group.live("staging")
    assert staging is not None and staging.version == 1
