"""The feature part of a pipeline spec: which columns, which derived columns, which preprocessing.

Derived columns are checked here, when the spec is applied: every expression is parsed and typed
against the declared feature columns, so an unknown column or function, a syntax error or a
division of text is refused with its position before any data arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import pandas as pd
from pydantic import Field, StringConstraints

from shared.events.envelope import Frozen
from shared.features.expressions import MAX_LENGTH, NUMBER, ExpressionError, parse
from shared.features.transformers import input_kinds, model_kind

if TYPE_CHECKING:
    from shared.profile import DataProfile

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DerivedColumn(Frozen):
    """A column computed from others by an expression (see docs in the README)."""

    name: ColumnName
    expr: str = Field(min_length=1, max_length=MAX_LENGTH, description="e.g. log1p(income) / household")


class FeatureSpec(Frozen):
    """Declared feature columns; a list left out (None) is inferred from the first dataset."""

    numeric: tuple[ColumnName, ...] | None = None
    categorical: tuple[ColumnName, ...] | None = None
    exclude: tuple[ColumnName, ...] = Field(
        default=(), description="Columns never used as features (ids, timestamps, free text)."
    )
    derived: tuple[DerivedColumn, ...] = Field(
        default=(),
        description="Computed inside the model from declared feature columns, so serving computes them too.",
    )


class NumericPreprocessing(Frozen):
    """How numeric features are imputed, transformed and scaled."""

    imputer: Literal["mean", "median", "most_frequent"] = "median"
    scale: bool = True
    log: tuple[ColumnName, ...] = Field(
        default=(), description="Numeric columns replaced by sign(x)·log(1+|x|) before imputing."
    )
    polynomial_degree: int | None = Field(
        default=None, ge=2, le=3, description="Adds powers and products of the numeric features."
    )
    quantile_bins: int | None = Field(
        default=None, ge=2, le=50, description="Numeric features become one-hot quantile bins."
    )


class CategoricalPreprocessing(Frozen):
    """How categorical features are imputed and one-hot encoded (unknown categories ignored)."""

    imputer: Literal["most_frequent", "constant"] = Field(
        default="most_frequent", description="constant: missing becomes its own category."
    )
    max_categories: int | None = Field(
        default=50, ge=2, description="Rarer categories are merged, so wide data stays bounded."
    )


class Preprocessing(Frozen):
    """Feature preprocessing ahead of the estimator."""

    numeric: NumericPreprocessing = NumericPreprocessing()
    categorical: CategoricalPreprocessing = CategoricalPreprocessing()


class FeatureSet(Frozen):
    """The feature columns a model is trained on, resolved against a dataset."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Every feature column, numeric first."""
        return (*self.numeric, *self.categorical)


def derived_problems(features: FeatureSpec, *, target: str, sensitive: str | None) -> list[str]:
    """Why the derived columns cannot be computed from the declared features (empty if they can)."""
    problems: list[str] = []
    raw = {*(features.numeric or ()), *(features.categorical or ())}
    reserved = {target, *features.exclude} | ({sensitive} if sensitive else set())
    names = [d.name for d in features.derived]
    for index, derived in enumerate(features.derived):
        where = f"features.derived.{index} ({derived.name})"
        if derived.name in raw or derived.name in reserved or derived.name in names[:index]:
            problems.append(f"{where}: the name is already a column of the data or another derived column")
    columns = input_kinds(
        numeric=tuple(features.numeric or ()), categorical=tuple(features.categorical or ())
    )
    for index, derived in enumerate(features.derived):
        try:
            columns[derived.name] = model_kind(parse(derived.expr, columns))
        except ExpressionError as error:
            hint = ""
            if "unknown column" in error.message:
                hint = "; expressions read the columns declared in features.numeric / features.categorical"
            problems.append(f"features.derived.{index} ({derived.name}): {error}{hint}")
            columns[derived.name] = NUMBER  # so one mistake is reported once, not again in every user
    return problems


def log_problems(features: FeatureSpec, preprocessing: Preprocessing) -> list[str]:
    """Log-transformed columns that are not numeric features, and choices that exclude each other."""
    numeric = preprocessing.numeric
    problems = []
    if numeric.polynomial_degree is not None and numeric.quantile_bins is not None:
        problems.append("preprocessing.numeric: choose polynomial_degree or quantile_bins, not both")
    not_numeric = {*(features.categorical or ()), *features.exclude}
    for name in numeric.log:
        if name in not_numeric:
            problems.append(f"preprocessing.numeric.log: {name!r} is not a numeric feature")
    if features.numeric is not None:
        unknown = sorted(set(numeric.log) - set(features.numeric) - {d.name for d in features.derived})
        if unknown:
            problems.append(f"preprocessing.numeric.log: {unknown} are not declared numeric features")
    return problems


def resolve_features(
    spec_features: FeatureSpec,
    frame: pd.DataFrame,
    *,
    reserved: set[str],
    previous: DataProfile | None = None,
) -> FeatureSet:
    """The features to use: declared lists first, then those of the previous profile, then inferred.

    ``reserved`` are columns never inferred as features (the target, the sensitive attribute).
    Inference keeps the pipeline's input schema stable: once a profile exists, columns that
    appear later are not silently added to the model (ingest warns about them instead).
    Numeric dtypes (not booleans) become numeric features, everything else categorical; derived
    columns' names are never inferred (the model computes them).
    """
    declared = spec_features
    taken = {
        *reserved,
        *declared.exclude,
        *(declared.numeric or ()),
        *(declared.categorical or ()),
        *(d.name for d in declared.derived),
    }
    if previous is not None:
        inferred_numeric = [c for c in previous.numeric if c not in taken]
        inferred_categorical = [c for c in previous.categorical if c not in taken]
    else:
        candidates = [str(c) for c in frame.columns if str(c) not in taken]
        inferred_numeric = [c for c in candidates if is_numeric_column(frame[c])]
        inferred_categorical = [c for c in candidates if not is_numeric_column(frame[c])]
    return FeatureSet(
        numeric=tuple(declared.numeric if declared.numeric is not None else inferred_numeric),
        categorical=tuple(declared.categorical if declared.categorical is not None else inferred_categorical),
    )


def is_numeric_column(values: pd.Series) -> bool:
    """Whether a column holds numbers (booleans count as categories)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
