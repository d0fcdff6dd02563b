"""The pipeline spec: what to do with a pipeline's datasets, from validation to deployment.

A spec is written as YAML, parsed into a frozen model, and versioned by its content so that
applying the same spec twice yields the same ``spec.version``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

import pandas as pd
import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.environments import EnvironmentSpec, environment_problems, fill_environments
from shared.events.envelope import DeploymentTarget, Frozen, PipelineName
from shared.features.spec import (
    ColumnName,
    FeatureSet,
    FeatureSpec,
    Preprocessing,
    derived_problems,
    log_problems,
)
from shared.features.spec import is_numeric_column as is_numeric_column  # its importers predate the split
from shared.features.spec import resolve_features as _resolve_features
from shared.release import ReleaseSpec

if TYPE_CHECKING:
    from shared.profile import DataProfile

Task = Literal["classification", "regression"]
ParamValue = str | int | float | bool | None

METRICS_BY_TASK: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "classification": (
            "accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "roc_auc",
            "log_loss",
        ),
        "regression": ("rmse", "mae", "r2"),
    }
)
HIGHER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {
        "accuracy": True,
        "precision_macro": True,
        "recall_macro": True,
        "f1_macro": True,
        "roc_auc": True,
        "log_loss": False,
        "rmse": False,
        "mae": False,
        "r2": True,
    }
)
DEFAULT_PRIMARY_METRIC: Mapping[str, str] = MappingProxyType(
    {"classification": "f1_macro", "regression": "rmse"}
)

# Only these classes may be imported from a spec: an import path taken from user input is
# otherwise a way to run arbitrary code (``os.system``).
ESTIMATORS: Mapping[str, Task] = MappingProxyType(
    {
        "sklearn.linear_model.LogisticRegression": "classification",
        "sklearn.ensemble.RandomForestClassifier": "classification",
        "sklearn.ensemble.ExtraTreesClassifier": "classification",
        "sklearn.ensemble.GradientBoostingClassifier": "classification",
        "sklearn.ensemble.HistGradientBoostingClassifier": "classification",
        "sklearn.tree.DecisionTreeClassifier": "classification",
        "sklearn.neighbors.KNeighborsClassifier": "classification",
        "sklearn.naive_bayes.GaussianNB": "classification",
        "sklearn.linear_model.LinearRegression": "regression",
        "sklearn.linear_model.Ridge": "regression",
        "sklearn.linear_model.Lasso": "regression",
        "sklearn.linear_model.ElasticNet": "regression",
        "sklearn.ensemble.RandomForestRegressor": "regression",
        "sklearn.ensemble.ExtraTreesRegressor": "regression",
        "sklearn.ensemble.GradientBoostingRegressor": "regression",
        "sklearn.ensemble.HistGradientBoostingRegressor": "regression",
        "sklearn.tree.DecisionTreeRegressor": "regression",
        "sklearn.neighbors.KNeighborsRegressor": "regression",
    }
)
DEFAULT_ESTIMATOR: Mapping[str, str] = MappingProxyType(
    {
        "classification": "sklearn.ensemble.RandomForestClassifier",
        "regression": "sklearn.ensemble.RandomForestRegressor",
    }
)
# Set by the platform (from ``seed``, and one job per fit), so a spec may not set them.
RESERVED_PARAMS = frozenset({"random_state", "n_jobs"})


class SpecError(ValueError):
    """A pipeline spec that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid pipeline spec:\n" + "\n".join(f"  - {p}" for p in problems))


class SearchSpec(Frozen):
    """Hyper-parameter search by cross-validation on the train split."""

    kind: Literal["grid", "random"] = "grid"
    space: dict[str, tuple[ParamValue, ...]] = Field(default_factory=dict)
    folds: int = Field(default=5, ge=2, le=20)
    n_iter: int = Field(default=10, ge=1, le=1000, description="Candidates tried by random search.")
    scoring: str | None = Field(default=None, description="A metric; defaults to primary_metric.")


class EstimatorSpec(Frozen):
    """An allow-listed scikit-learn estimator, its fixed parameters and its search."""

    path: str = Field(description="Import path, e.g. sklearn.ensemble.RandomForestClassifier.")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    search: SearchSpec = SearchSpec()

    @field_validator("path")
    @classmethod
    def _allow_listed(cls, path: str) -> str:
        if path not in ESTIMATORS:
            raise ValueError(f"{path!r} is not allow-listed; choose one of {_allowed()}")
        return path


class ValidationSpec(Frozen):
    """Thresholds of the dataset checks run by ingest, and the train/test split."""

    min_rows: int = Field(default=50, ge=1)
    max_missing_ratio: float = Field(default=0.2, ge=0, le=1, description="Per column.")
    max_duplicate_ratio: float = Field(default=0.1, ge=0, le=1)
    max_class_imbalance: float = Field(default=20.0, ge=1, description="Majority / minority.")
    max_bias_difference: float = Field(
        default=0.2, ge=0, le=1, description="Spread of positive-label rates across groups."
    )
    min_group_rows: int = Field(
        default=10, ge=1, description="Smaller sensitive groups are left out of group figures."
    )
    drift_psi_warning: float = Field(default=0.2, gt=0)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)


class Gate(Frozen):
    """A bound on one metric of the candidate: exactly one of ``min`` and ``max``."""

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Gate:
        if (self.min is None) == (self.max is None):
            raise ValueError(f"gate on {self.metric!r} needs exactly one of min or max")
        return self

    @property
    def bound(self) -> tuple[Literal["min", "max"], float]:
        """Which side is bounded, and the threshold."""
        if self.min is not None:
            return "min", self.min
        return "max", cast(float, self.max)


class DeploymentSpec(Frozen):
    """How an approved model is served and monitored."""

    realtime: bool = True
    batch: bool = False
    drift_psi_threshold: float = Field(default=0.25, gt=0)
    drift_window: int = Field(default=500, ge=1, description="Predictions per drift check.")
    retrain_cooldown_seconds: int = Field(default=3600, ge=0)
    release: ReleaseSpec = Field(
        default=ReleaseSpec(), description="How a new version replaces the serving one (shared.release)."
    )
    workers: Literal["default", "dedicated", "shared"] = Field(
        default="default",
        description="Its own serving workers and port, or the shared workers (default: the deploy "
        "service's CONVEYOR_SERVING_POOL).",
    )

    @property
    def target(self) -> DeploymentTarget:
        """The serving modes, as events carry them."""
        return DeploymentTarget(realtime=self.realtime, batch=self.batch)


class PipelineSpec(Frozen):
    """What to do with one pipeline's datasets: validate, train, gate, approve, deploy."""

    name: PipelineName
    target: ColumnName
    task: Task
    features: FeatureSpec = FeatureSpec()
    preprocessing: Preprocessing = Preprocessing()
    estimator: EstimatorSpec
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    validation: ValidationSpec = ValidationSpec()
    primary_metric: str
    gates: tuple[Gate, ...] = ()
    min_improvement: float = Field(
        default=0.0, ge=0, description="Over the champion, on primary_metric, in its direction."
    )
    sensitive_attribute: ColumnName | None = None
    positive_label: ParamValue = None
    approval: Literal["auto", "manual"] = "manual"
    deployment: DeploymentSpec = DeploymentSpec()
    environments: tuple[EnvironmentSpec, ...] = Field(
        default=(EnvironmentSpec(name="production"),),
        description="In promotion order; approval makes a version eligible for the first.",
    )

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        # Defaults that depend on the task are filled in before validation, so the version of a
        # minimal spec equals that of the same spec written out in full. With a bad task they are
        # filled all the same, so the one error reported is the task.
        if isinstance(data, Mapping):
            task: str = data["task"] if data.get("task") in METRICS_BY_TASK else "classification"
            data = dict(data)
            data.setdefault("estimator", {"path": DEFAULT_ESTIMATOR[task]})
            data.setdefault("primary_metric", DEFAULT_PRIMARY_METRIC[task])
            data = fill_environments(data)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        problems = [
            *_metric_problems(self),
            *_column_problems(self),
            *_estimator_problems(self),
            *derived_problems(self.features, target=self.target, sensitive=self.sensitive_attribute),
            *log_problems(self.features, self.preprocessing),
        ]
        problems += environment_problems(self.environments, approval=self.approval)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def version(self) -> str:
        """A short hash of the spec's content: the same spec always has the same version."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "spec-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def scoring(self) -> str:
        """The metric the hyper-parameter search optimises."""
        return self.estimator.search.scoring or self.primary_metric

    @classmethod
    def from_mapping(cls, data: Any) -> PipelineSpec:
        """Validate a parsed spec, raising ``SpecError`` with every problem found."""
        if not isinstance(data, Mapping):
            raise SpecError([f"a spec is a mapping of fields, not {type(data).__name__}"])
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise SpecError(_readable(error)) from None

    @classmethod
    def from_yaml(cls, text: str) -> PipelineSpec:
        """Parse a YAML spec, raising ``SpecError`` with every problem found."""
        try:
            # A SafeLoader subclass: no arbitrary objects are built.
            data = yaml.load(text, Loader=_SpecLoader)
        except yaml.YAMLError as error:
            raise SpecError([f"not valid YAML: {error}"]) from None
        return cls.from_mapping(data)

    def to_yaml(self) -> str:
        """The spec as YAML, every field written out (defaults included)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def resolve_features(
    spec: PipelineSpec, frame: pd.DataFrame, *, previous: DataProfile | None = None
) -> FeatureSet:
    """The raw feature columns of ``spec`` for ``frame``: see ``shared.features.spec.resolve_features``."""
    reserved = {spec.target} | ({spec.sensitive_attribute} if spec.sensitive_attribute else set())
    return _resolve_features(spec.features, frame, reserved=reserved, previous=previous)


def estimator_class(path: str) -> type:
    """Import an allow-listed estimator class; anything else is refused before import."""
    if path not in ESTIMATORS:
        raise SpecError([f"estimator {path!r} is not allow-listed; choose one of {_allowed()}"])
    module, _, name = path.rpartition(".")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def import_estimators() -> None:
    """Import every allow-listed estimator's module ahead of need.

    Reading a spec checks its estimator's parameters, which imports scikit-learn: the first spec
    read in a process took 0.10-0.26 s against 0.01-0.02 s for the next, in the event's path. A
    service calls this once it has started, in the background.
    """
    for module in sorted({path.rpartition(".")[0] for path in ESTIMATORS}):
        importlib.import_module(module)


class _SpecLoader(yaml.SafeLoader):
    """YAML read as a person means it (YAML 1.2): ``1e-3`` is a number, ``yes`` and ``no`` text.

    YAML 1.1 reads ``1e-3`` as a string and ``yes``, ``no``, ``on``, ``off`` as booleans, which
    would turn a class label ``yes`` into True.
    """


_BOOL = "tag:yaml.org,2002:bool"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _allowed() -> str:
    return ", ".join(sorted(ESTIMATORS))


def _readable(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        cause = item.get("ctx", {}).get("error")
        if item["type"] == "value_error" and cause is not None:
            # Whole-spec checks name their own field in each line.
            prefix = f"{where}: " if where else ""
            problems.extend(prefix + line for line in str(cause).splitlines())
        elif item["type"] == "missing":
            problems.append(f"{where}: required field is missing")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        else:
            problems.append(f"{where}: {item['msg']}")
    return problems


def _metric_problems(spec: PipelineSpec) -> list[str]:
    known = METRICS_BY_TASK[spec.task]
    named = [
        ("primary_metric", spec.primary_metric),
        ("estimator.search.scoring", spec.scoring),
        *((f"gates.{i}.metric", gate.metric) for i, gate in enumerate(spec.gates)),
    ]
    return [
        f"{where}: {metric!r} is not a {spec.task} metric; use one of {', '.join(known)}"
        for where, metric in named
        if metric not in known
    ]


def _column_problems(spec: PipelineSpec) -> list[str]:
    problems: list[str] = []
    numeric, categorical = spec.features.numeric or (), spec.features.categorical or ()
    for where, columns in (
        ("features.numeric", numeric),
        ("features.categorical", categorical),
        ("features.exclude", spec.features.exclude),
    ):
        if spec.target in columns:
            problems.append(f"{where}: the target {spec.target!r} cannot be listed here")
    if both := sorted(set(numeric) & set(categorical)):
        problems.append(f"features: {both} are declared both numeric and categorical")
    if spec.sensitive_attribute == spec.target:
        problems.append("sensitive_attribute: it cannot be the target")
    if spec.positive_label is not None and spec.task != "classification":
        problems.append("positive_label: only classification has a positive label")
    return problems


def _estimator_problems(spec: PipelineSpec) -> list[str]:
    path = spec.estimator.path
    if ESTIMATORS[path] != spec.task:
        return [f"estimator.path: {path} is a {ESTIMATORS[path]} estimator, the task is {spec.task}"]
    cls = estimator_class(path)
    accepted = set(cls().get_params())
    params, search = spec.estimator.params, spec.estimator.search
    problems = [
        f"estimator.{where}.{name}: {cls.__name__} has no parameter {name!r}"
        for where, names in (("params", params), ("search.space", search.space))
        for name in names
        if name not in accepted
    ]
    problems += [
        f"estimator.{where}.{name}: set by the platform (seed, one job per fit)"
        for where, names in (("params", params), ("search.space", search.space))
        for name in names
        if name in RESERVED_PARAMS
    ]
    problems += [
        f"estimator.search.space.{name}: also fixed in estimator.params; keep one"
        for name in search.space
        if name in params
    ]
    problems += [
        f"estimator.search.space.{name}: needs at least one value"
        for name, values in search.space.items()
        if not values
    ]
    if search.kind == "random" and not search.space:
        problems.append("estimator.search.space: random search needs a space to sample")
    if problems:
        return problems
    return _value_problems(cls, params=params, space=search.space)


def _value_problems(
    cls: type, *, params: dict[str, ParamValue], space: dict[str, tuple[ParamValue, ...]]
) -> list[str]:
    # scikit-learn checks parameter values only when fitting; its own checker (private, hence the
    # guard) lets a bad value be refused when the spec is applied instead of hours later.
    if problem := _check_values(cls, params):
        return [f"estimator.params: {problem}"]
    return [
        f"estimator.search.space.{name}: {problem}"
        for name, values in space.items()
        for value in values
        if (problem := _check_values(cls, {**params, name: value}))
    ]


def _check_values(cls: type, params: dict[str, ParamValue]) -> str | None:
    check = getattr(cls(**params), "_validate_params", None)
    if check is None:
        return None
    try:
        check()
    except (TypeError, ValueError) as error:
        return str(error)
    return None
