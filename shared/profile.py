"""Data profiles: the training data's distribution, kept to measure drift against (PSI).

Numeric features are binned at the training data's deciles, so every bin holds about a tenth of
the training rows and PSI is not dominated by near-empty bins; the outer bins are open-ended so
values beyond the training range still land somewhere. Missing values are a bin of their own,
so a change in missingness is drift too.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from shared.events.envelope import Frozen

ColumnKind = Literal["numeric", "boolean", "datetime", "text"]
FeatureKind = Literal["numeric", "categorical"]

OTHER = "__other__"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BINS = 10
TOP_CATEGORIES = 20
# Floor for a bin's share: an empty bin would make PSI infinite.
PSI_EPSILON = 1e-4


class FeatureProfile(Frozen):
    """The distribution of one feature column."""

    kind: FeatureKind
    count: int = Field(ge=0, description="Non-missing values.")
    missing: int = Field(ge=0)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] = Field(default_factory=dict, description="p5, p25, p50, ...")
    bin_edges: list[float] = Field(
        default_factory=list,
        description="Interior cut points; bin i is (edge[i-1], edge[i]], outer bins open-ended.",
    )
    bin_counts: list[int] = Field(default_factory=list)
    categories: dict[str, int] = Field(
        default_factory=dict, description=f"Counts of the top categories and {OTHER!r}."
    )
    distinct: int = Field(default=0, ge=0)

    @property
    def rows(self) -> int:
        """Rows profiled, missing included."""
        return self.count + self.missing


class DataProfile(Frozen):
    """A dataset's shape: every column's kind, and the distribution of each feature."""

    rows: int = Field(ge=0)
    columns: dict[str, ColumnKind]
    features: dict[str, FeatureProfile]

    @property
    def numeric(self) -> tuple[str, ...]:
        """Numeric feature names."""
        return tuple(name for name, f in self.features.items() if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        """Categorical feature names."""
        return tuple(name for name, f in self.features.items() if f.kind == "categorical")

    def to_json(self) -> bytes:
        """The profile as JSON bytes."""
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DataProfile:
        """A profile read back from ``to_json``."""
        return cls.model_validate_json(data)


def profile_frame(
    frame: pd.DataFrame, *, numeric: list[str] | tuple[str, ...], categorical: list[str] | tuple[str, ...]
) -> DataProfile:
    """Profile the named feature columns of ``frame`` (and record every column's kind)."""
    # Column by column on every core: the sorts and hash tables release the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="profile") as pool:
        numeric_profiles = pool.map(lambda name: _numeric_profile(frame[name]), numeric)
        categorical_profiles = pool.map(lambda name: _categorical_profile(frame[name]), categorical)
        features = dict(zip(numeric, numeric_profiles, strict=True))
        features |= dict(zip(categorical, categorical_profiles, strict=True))
    columns = {str(name): column_kind(frame[name]) for name in frame.columns}
    return DataProfile(rows=len(frame), columns=columns, features=features)


def column_kind(values: pd.Series) -> ColumnKind:
    """What a column holds, as far as its dtype says."""
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    return "text"


def as_numbers(values: pd.Series) -> pd.Series:
    """A column as floats: text that is not a number, and infinities, count as missing."""
    numbers = _floats(values)
    return pd.Series(np.where(np.isfinite(numbers), numbers, np.nan), index=values.index, name=values.name)


def _floats(values: pd.Series) -> np.ndarray:
    """The column as a float array, text that is not a number as NaN (possibly a view of it)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def as_categories(values: pd.Series) -> pd.Series:
    """A column as category strings, so 1, 1.0 and "1" are one category; missing stays NaN."""
    if values.dtype == object:
        # Python objects of mixed types: 1, 1.0 and True hash alike, so each is keyed on its own.
        return values.astype(object).map(_category_key).astype(object)
    codes, keys = _typed_categories(values)
    lookup = np.array([*keys, math.nan], dtype=object)  # code -1, missing, reads the last: NaN
    return pd.Series(lookup[codes], index=values.index, name=values.name, dtype=object)


def _typed_categories(values: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Each row's distinct value (its position, -1 where missing), and each distinct value's category.

    Typed columns are keyed once per distinct value, not once per row (millions of rows).
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, [_category_key(value) for value in uniques]


def category_key(value: object) -> object:
    """One value as its category string, as ``as_categories`` spells it; missing is NaN."""
    return _category_key(value)


def population_stability_index(feature: FeatureProfile, values: pd.Series) -> float:
    """PSI of ``values`` against the profiled distribution of one feature."""
    if feature.kind == "numeric":
        expected = [*feature.bin_counts, feature.missing]
        actual = _bin_numbers(as_numbers(values), feature.bin_edges)
    else:
        labels = list(feature.categories)
        expected = [*feature.categories.values(), feature.missing]
        actual = _count_categories(as_categories(values), labels)
    return _psi(np.asarray(expected, dtype=float), np.asarray(actual, dtype=float))


def psi_by_feature(profile: DataProfile, frame: pd.DataFrame) -> dict[str, float]:
    """PSI of every profiled feature present in ``frame``; empty when ``frame`` has no rows."""
    if frame.empty:
        return {}
    return {
        name: population_stability_index(feature, frame[name])
        for name, feature in profile.features.items()
        if name in frame.columns
    }


def _numeric_profile(values: pd.Series) -> FeatureProfile:
    # The present values, as ``as_numbers`` counts them, copied once and sorted in place: the
    # quantiles, the bin counts and the distinct count all read them.
    numbers = _floats(values)
    array = numbers[np.isfinite(numbers)]
    missing = len(values) - len(array)
    if not len(array):
        return FeatureProfile(kind="numeric", count=0, missing=missing, bin_counts=[0])
    array.sort()
    edges = np.unique(sorted_quantiles(array, np.linspace(0, 1, BINS + 1)[1:-1]))
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    # Values in (edge[i-1], edge[i]]: the count of values <= each edge, differenced.
    below = np.searchsorted(array, edges, side="right")
    bin_counts = np.diff(np.concatenate(([0], below, [len(array)])))
    quantiles = sorted_quantiles(array, np.asarray(QUANTILES))
    return FeatureProfile(
        kind="numeric",
        count=len(array),
        missing=missing,
        mean=float(array.mean()),
        std=std,
        min=float(array[0]),
        max=float(array[-1]),
        quantiles={f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        bin_edges=[float(edge) for edge in edges],
        bin_counts=[int(count) for count in bin_counts],
        distinct=int(np.count_nonzero(np.diff(array))) + 1,
    )


def sorted_quantiles(array: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile(array, quantiles)`` (its default, linear method) of an array already sorted.

    Read off by position: ``np.quantile`` would copy and partition the values once per call.
    The arithmetic is numpy's own, so the figures are the same to the last bit.
    """
    size = len(array)
    position = (size - 1) * quantiles
    below = np.minimum(np.floor(position).astype(np.intp), size - 1)
    above = np.minimum(below + 1, size - 1)
    gamma = position - below
    low, high = array[below], array[above]
    step = high - low
    return np.where(gamma >= 0.5, high - step * (1 - gamma), low + step * gamma)


def _categorical_profile(values: pd.Series) -> FeatureProfile:
    counts = _category_counts(values)
    top = counts[:TOP_CATEGORIES]
    kept = {str(label): count for label, count in top}
    kept[OTHER] = sum(count for _, count in counts[TOP_CATEGORIES:])
    present = sum(count for _, count in counts)
    return FeatureProfile(
        kind="categorical",
        count=present,
        missing=len(values) - present,
        categories=kept,
        distinct=len(counts),
    )


def _category_counts(values: pd.Series) -> list[tuple[object, int]]:
    """Each category's rows, most first (ties in order of first appearance); missing values left out."""
    if values.dtype == object:
        counted = as_categories(values).dropna().value_counts()
        return [(label, int(count)) for label, count in counted.items()]
    # Typed columns: rows counted per distinct value, then per category, so millions of rows never
    # become Python strings (1 and 1.0 are still one category).
    codes, keys = _typed_categories(values)
    per_value = np.bincount(codes[codes >= 0], minlength=len(keys))
    by_key: dict[object, int] = {}
    for key, count in zip(keys, per_value, strict=True):
        by_key[key] = by_key.get(key, 0) + int(count)
    return sorted(by_key.items(), key=lambda item: -item[1])


def _bin_numbers(numbers: pd.Series, edges: list[float]) -> list[int]:
    """Counts per bin (right-closed, open outer bins), then the missing count last."""
    present = numbers.dropna().to_numpy()
    index = np.searchsorted(np.asarray(edges, dtype=float), present, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [*(int(c) for c in counts), len(numbers) - len(present)]


def _count_categories(categories: pd.Series, labels: list[str]) -> list[int]:
    """Counts per profiled category (unseen ones go to OTHER), then the missing count last."""
    known = set(labels) - {OTHER}
    present = categories.dropna()
    counts = present.where(present.isin(known), OTHER).value_counts()
    return [*(int(counts.get(label, 0)) for label in labels), len(categories) - len(present)]


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.sum() == 0 or actual.sum() == 0:
        return 0.0
    e = np.maximum(expected / expected.sum(), PSI_EPSILON)
    a = np.maximum(actual / actual.sum(), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _category_key(value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
