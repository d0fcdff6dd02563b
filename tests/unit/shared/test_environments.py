"""A spec's environments: the default, how approval and the first environment agree, what is refused."""

from __future__ import annotations

import pytest

from shared.environments import next_environment
from shared.pipeline_spec import PipelineSpec, SpecError

BASE = {"name": "churn", "target": "churned", "task": "classification"}


def test_without_environments_a_spec_has_production_under_its_approval_policy() -> None:
    spec = PipelineSpec.from_mapping({**BASE, "approval": "auto"})
    assert [(e.name, e.approval, e.role) for e in spec.environments] == [("production", "auto", "approver")]


def test_the_first_environment_and_the_approval_policy_fill_each_other() -> None:
    staged = PipelineSpec.from_mapping({**BASE, "environments": [{"name": "staging", "approval": "auto"}]})
    assert staged.approval == "auto"
    named = PipelineSpec.from_mapping({**BASE, "approval": "auto", "environments": [{"name": "staging"}]})
    assert named.environments[0].approval == "auto"
    assert PipelineSpec.from_yaml(staged.to_yaml()) == staged


def test_the_next_environment_follows_the_order_given() -> None:
    spec = PipelineSpec.from_mapping(
        {**BASE, "environments": [{"name": "staging"}, {"name": "production", "role": "release"}]}
    )
    following = next_environment(spec.environments, "staging")
    assert following is not None and (following.name, following.role) == ("production", "release")
    assert next_environment(spec.environments, "production") is None
    assert next_environment(spec.environments, "qa") is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"environments": []}, "environments: name at least one environment"),
        ({"environments": [{"name": "a"}, {"name": "a"}]}, "environments: ['a'] named more than once"),
        (
            {"approval": "auto", "environments": [{"name": "a", "approval": "manual"}]},
            "approval: 'auto' differs from environments.0.approval 'manual'; keep one",
        ),
        ({"environments": [{"name": "Prod!"}]}, "environments.0.name"),
        ({"environments": [{"name": "a", "owner": "x"}]}, "environments.0.owner: unknown field"),
    ],
)
def test_bad_environments_are_refused_with_the_reason(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(SpecError) as refused:
        PipelineSpec.from_mapping({**BASE, **fields})
    assert any(line.startswith(problem) for line in refused.value.problems), refused.value.problems
