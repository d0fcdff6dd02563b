"""The pipeline spec: parsing, defaults, validation errors, YAML round trip and versioning."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from shared.events.envelope import DeploymentTarget
from shared.pipeline_spec import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    HIGHER_IS_BETTER,
    METRICS_BY_TASK,
    PipelineSpec,
    SpecError,
    estimator_class,
    resolve_features,
)
from shared.profile import profile_frame

MINIMAL = """
name: churn
target: churned
task: classification
"""

FULL = """
name: churn
target: churned
task: classification
features:
  numeric: [tenure_months, monthly_charges]
  categorical: [plan, region]
  exclude: [customer_id]
preprocessing:
  numeric: {imputer: median, scale: true}
  categorical: {imputer: constant, max_categories: 30}
estimator:
  path: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 200, class_weight: balanced}
  search:
    kind: random
    space:
      max_depth: [4, 8, null]
      min_samples_leaf: [1, 5, 20]
    folds: 5
    n_iter: 6
    scoring: roc_auc
seed: 7
validation:
  min_rows: 500
  max_missing_ratio: 0.1
  max_duplicate_ratio: 0.05
  max_class_imbalance: 10
  max_bias_difference: 0.15
  min_group_rows: 30
  drift_psi_warning: 0.2
  test_fraction: 0.25
primary_metric: f1_macro
gates:
  - {metric: f1_macro, min: 0.7}
  - {metric: roc_auc, min: 0.8}
  - {metric: log_loss, max: 0.6}
min_improvement: 0.01
sensitive_attribute: gender
positive_label: "yes"
approval: manual
deployment:
  realtime: true
  batch: true
  drift_psi_threshold: 0.25
  drift_window: 1000
  retrain_cooldown_seconds: 86400
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_yaml(text)
    return caught.value.problems


def test_minimal_spec_gets_task_defaults() -> None:
    spec = PipelineSpec.from_yaml(MINIMAL)
    assert spec.estimator.path == DEFAULT_ESTIMATOR["classification"]
    assert spec.primary_metric == "f1_macro"
    assert spec.scoring == "f1_macro"
    assert spec.approval == "manual"
    assert spec.features.numeric is None and spec.features.categorical is None


def test_minimal_regression_spec_defaults_to_rmse() -> None:
    spec = PipelineSpec.from_yaml("name: price\ntarget: price\ntask: regression\n")
    assert spec.primary_metric == "rmse"
    assert ESTIMATORS[spec.estimator.path] == "regression"


def test_full_spec_parses() -> None:
    spec = PipelineSpec.from_yaml(FULL)
    assert spec.estimator.search.space["max_depth"] == (4, 8, None)
    assert spec.estimator.params == {"n_estimators": 200, "class_weight": "balanced"}
    assert spec.scoring == "roc_auc"
    assert spec.gates[2].bound == ("max", 0.6)
    assert spec.deployment.target == DeploymentTarget(realtime=True, batch=True)
    assert spec.positive_label == "yes"


def test_yaml_round_trip_keeps_spec_and_version() -> None:
    spec = PipelineSpec.from_yaml(FULL)
    again = PipelineSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.version == spec.version


def test_same_spec_same_version_whatever_the_layout() -> None:
    reordered = "task: classification\ntarget: churned\nname: churn  # comment\n"
    explicit = MINIMAL + "estimator: {path: sklearn.ensemble.RandomForestClassifier}\n"
    versions = {PipelineSpec.from_yaml(t).version for t in (MINIMAL, MINIMAL, reordered, explicit)}
    assert len(versions) == 1
    assert re.fullmatch(r"spec-[0-9a-f]{16}", versions.pop())


def test_changed_spec_new_version() -> None:
    base = PipelineSpec.from_yaml(MINIMAL)
    changed = PipelineSpec.from_yaml(MINIMAL + "seed: 1\n")
    gated = PipelineSpec.from_yaml(MINIMAL + "gates: [{metric: accuracy, min: 0.8}]\n")
    assert len({base.version, changed.version, gated.version}) == 3


def test_exponent_without_dot_is_a_number() -> None:
    spec = PipelineSpec.from_yaml(
        "name: p\ntarget: y\ntask: regression\n"
        "estimator: {path: sklearn.linear_model.Ridge, params: {alpha: 1e-3}}\n"
    )
    assert spec.estimator.params["alpha"] == pytest.approx(0.001)


def test_yes_and_no_are_text_true_and_false_are_booleans() -> None:
    spec = PipelineSpec.from_yaml(
        MINIMAL + "positive_label: yes\ndeployment: {realtime: false, batch: true}\n"
    )
    assert spec.positive_label == "yes"
    assert spec.deployment.target == DeploymentTarget(realtime=False, batch=True)
    assert PipelineSpec.from_yaml(spec.to_yaml()) == spec


def test_unknown_estimator_is_refused() -> None:
    problems = problems_of(MINIMAL + "estimator: {path: sklearn.ensemble.NoSuchForest}\n")
    assert any("not allow-listed" in p and "NoSuchForest" in p for p in problems)


def test_estimator_outside_allow_list_is_refused_before_import() -> None:
    problems = problems_of(MINIMAL + "estimator: {path: os.system}\n")
    assert problems[0].startswith("estimator.path: 'os.system' is not allow-listed")
    with pytest.raises(SpecError):
        estimator_class("os.system")


def test_estimator_must_match_task() -> None:
    problems = problems_of(MINIMAL + "estimator: {path: sklearn.linear_model.Ridge}\n")
    assert problems == [
        "estimator.path: sklearn.linear_model.Ridge is a regression estimator, the task is classification"
    ]


def test_gate_on_metric_the_task_lacks() -> None:
    problems = problems_of(MINIMAL + "gates: [{metric: rmse, max: 3}]\n")
    assert len(problems) == 1
    assert problems[0].startswith("gates.0.metric: 'rmse' is not a classification metric")


def test_gate_needs_exactly_one_bound() -> None:
    problems = problems_of(MINIMAL + "gates: [{metric: accuracy, min: 0.5, max: 0.9}]\n")
    assert "exactly one of min or max" in problems[0]


def test_missing_target_is_named() -> None:
    assert problems_of("name: churn\ntask: classification\n") == ["target: required field is missing"]


def test_bad_hyper_parameter_names() -> None:
    text = MINIMAL + (
        "estimator:\n  path: sklearn.ensemble.RandomForestClassifier\n"
        "  params: {n_trees: 10}\n  search: {space: {depth: [1, 2]}}\n"
    )
    problems = problems_of(text)
    assert "estimator.params.n_trees: RandomForestClassifier has no parameter 'n_trees'" in problems
    assert any(p.startswith("estimator.search.space.depth:") for p in problems)


def test_bad_hyper_parameter_value() -> None:
    text = MINIMAL + (
        "estimator:\n  path: sklearn.ensemble.RandomForestClassifier\n"
        "  search: {space: {n_estimators: [10, -1]}}\n"
    )
    (problem,) = problems_of(text)
    assert problem.startswith("estimator.search.space.n_estimators:")
    assert "-1" in problem


def test_empty_search_list_and_random_without_space() -> None:
    problems = problems_of(
        MINIMAL + "estimator:\n  path: sklearn.tree.DecisionTreeClassifier\n"
        "  search: {space: {max_depth: []}}\n"
    )
    assert problems == ["estimator.search.space.max_depth: needs at least one value"]
    problems = problems_of(
        MINIMAL + "estimator: {path: sklearn.tree.DecisionTreeClassifier, search: {kind: random}}\n"
    )
    assert problems == ["estimator.search.space: random search needs a space to sample"]


def test_platform_parameters_are_reserved() -> None:
    problems = problems_of(
        MINIMAL + "estimator: {path: sklearn.tree.DecisionTreeClassifier, params: {random_state: 1}}\n"
    )
    assert any("set by the platform" in p for p in problems)


def test_several_problems_reported_together() -> None:
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_yaml(
            MINIMAL + "primary_metric: r2\nsensitive_attribute: churned\nfeatures: {numeric: [churned]}\n"
        )
    error = caught.value
    assert isinstance(error, ValueError)
    assert len(error.problems) == 4
    assert str(error).startswith("invalid pipeline spec:\n  - ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a list\n", "a spec is a mapping"),
        (MINIMAL + "estimatr: {}\n", "estimatr: unknown field"),
        ("name: Churn!\ntarget: y\ntask: classification\n", "name: String should match"),
        ("name: p\ntarget: y\ntask: clustering\n", "task: Input should be"),
        ("name: p\ntarget: y\ntask: regression\npositive_label: 1\n", "positive_label: only"),
    ],
)
def test_readable_problems(text: str, expected: str) -> None:
    assert any(expected in p for p in problems_of(text))


def test_metric_tables_agree() -> None:
    every = {m for metrics in METRICS_BY_TASK.values() for m in metrics}
    assert every == set(HIGHER_IS_BETTER)
    assert not HIGHER_IS_BETTER["rmse"] and HIGHER_IS_BETTER["roc_auc"]


def test_every_allow_listed_estimator_imports() -> None:
    for path in ESTIMATORS:
        assert estimator_class(path).__name__ == path.rsplit(".", 1)[1]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "age": [30, 40, 50],
            "income": [1.0, 2.0, None],
            "plan": ["a", "b", "a"],
            "vip": [True, False, True],
            "gender": ["f", "m", "f"],
            "churned": [0, 1, 0],
        }
    )


def test_features_inferred_from_dtypes() -> None:
    spec = PipelineSpec.from_yaml(MINIMAL + "sensitive_attribute: gender\nfeatures: {exclude: [id]}\n")
    features = resolve_features(spec, frame())
    assert features.numeric == ("age", "income")
    # Booleans are categories; target, sensitive attribute and excluded columns are no features.
    assert features.categorical == ("plan", "vip")


def test_declared_features_win_and_previous_profile_pins() -> None:
    declared = PipelineSpec.from_yaml(MINIMAL + "features: {numeric: [age]}\n")
    features = resolve_features(declared, frame())
    assert features.numeric == ("age",)
    assert features.categorical == ("plan", "vip", "gender")

    minimal = PipelineSpec.from_yaml(MINIMAL)
    previous = profile_frame(frame(), numeric=["age"], categorical=["plan"])
    pinned = resolve_features(minimal, frame().assign(extra=1.0), previous=previous)
    assert pinned.columns == ("age", "plan")


def test_import_estimators_imports_every_allow_listed_module_ahead_of_a_spec_read() -> None:
    # In a fresh interpreter: this test process has imported scikit-learn already.
    code = (
        "import sys\n"
        "from shared.pipeline_spec import ESTIMATORS, import_estimators\n"
        "modules = {path.rpartition('.')[0] for path in ESTIMATORS}\n"
        "assert not modules & set(sys.modules), modules & set(sys.modules)\n"
        "import_estimators()\n"
        "print(sorted(modules - set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
