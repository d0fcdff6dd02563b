"""Data profiles and PSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.profile import (
    OTHER,
    TOP_CATEGORIES,
    DataProfile,
    as_categories,
    population_stability_index,
    profile_frame,
    psi_by_feature,
    sorted_quantiles,
)


def sample(*, shift: float = 0.0, rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100 + shift * 15, 15, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1]),
            "note": ["free text"] * rows,
        }
    )


def test_numeric_profile_figures() -> None:
    values = pd.Series([1.0, 2.0, 3.0, 4.0, None, np.inf])
    profile = profile_frame(pd.DataFrame({"x": values}), numeric=["x"], categorical=[])
    x = profile.features["x"]
    assert (x.kind, x.count, x.missing) == ("numeric", 4, 2)
    assert x.mean == pytest.approx(2.5)
    assert x.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert (x.min, x.max) == (1.0, 4.0)
    assert x.quantiles["p50"] == pytest.approx(2.5)
    assert set(x.quantiles) == {"p5", "p25", "p50", "p75", "p95"}
    assert sum(x.bin_counts) == 4
    assert len(x.bin_counts) == len(x.bin_edges) + 1


def test_quantile_bins_hold_similar_shares() -> None:
    profile = profile_frame(sample(), numeric=["amount"], categorical=[])
    counts = profile.features["amount"].bin_counts
    # Cut at the deciles: ten bins (the outer two open-ended) of about 200 rows each.
    assert len(counts) == 10
    assert max(counts) - min(counts) <= 2


def test_categorical_profile_keeps_top_categories() -> None:
    values = [f"c{i:02d}" for i in range(25) for _ in range(i + 1)] + [None]
    profile = profile_frame(pd.DataFrame({"c": values}), numeric=[], categorical=["c"])
    c = profile.features["c"]
    assert c.distinct == 25 and c.missing == 1
    assert len(c.categories) == TOP_CATEGORIES + 1
    # The five rarest categories (1 + 2 + 3 + 4 + 5 rows) are merged.
    assert c.categories[OTHER] == 15
    assert sum(c.categories.values()) == c.count


def test_columns_record_every_kind() -> None:
    frame = sample(rows=5).assign(flag=True, when=pd.Timestamp("2026-01-01"))
    profile = profile_frame(frame, numeric=["amount"], categorical=["plan"])
    assert profile.columns == {
        "amount": "numeric",
        "plan": "text",
        "note": "text",
        "flag": "boolean",
        "when": "datetime",
    }
    assert profile.numeric == ("amount",) and profile.categorical == ("plan",)


def test_psi_of_identical_data_is_zero() -> None:
    frame = sample()
    profile = profile_frame(frame, numeric=["amount"], categorical=["plan"])
    psi = psi_by_feature(profile, frame)
    assert psi == pytest.approx({"amount": 0.0, "plan": 0.0}, abs=1e-9)


def test_psi_of_a_fresh_sample_of_the_same_distribution_is_small() -> None:
    profile = profile_frame(sample(seed=0), numeric=["amount"], categorical=["plan"])
    psi = psi_by_feature(profile, sample(seed=1))
    assert all(value < 0.05 for value in psi.values())


def test_psi_of_a_shifted_distribution_is_large() -> None:
    profile = profile_frame(sample(), numeric=["amount"], categorical=["plan"])
    assert psi_by_feature(profile, sample(shift=1.0, seed=1))["amount"] > 0.25
    flipped = pd.Series(["pro"] * 600 + ["plus"] * 300 + ["basic"] * 100)
    assert population_stability_index(profile.features["plan"], flipped) > 0.25


def test_values_beyond_the_training_range_land_in_open_bins() -> None:
    profile = profile_frame(sample(), numeric=["amount"], categorical=[])
    far = pd.Series([1e9] * 100 + [-1e9] * 100)
    assert population_stability_index(profile.features["amount"], far) > 1.0


def test_unseen_categories_and_missing_values_are_drift() -> None:
    profile = profile_frame(sample(), numeric=["amount"], categorical=["plan"])
    plan = profile.features["plan"]
    assert population_stability_index(plan, pd.Series(["enterprise"] * 100)) > 1.0
    assert population_stability_index(plan, pd.Series([None] * 100, dtype=object)) > 1.0
    text = pd.Series(["n/a"] * 100)
    assert population_stability_index(profile.features["amount"], text) > 1.0


def test_all_missing_numeric_column_profiles_and_compares() -> None:
    frame = pd.DataFrame({"x": [None, None, None]}, dtype=float)
    profile = profile_frame(frame, numeric=["x"], categorical=[])
    assert profile.features["x"].count == 0
    assert population_stability_index(profile.features["x"], frame["x"]) == pytest.approx(0.0)


def test_psi_by_feature_skips_absent_columns_and_empty_frames() -> None:
    profile = profile_frame(sample(), numeric=["amount"], categorical=["plan"])
    assert set(psi_by_feature(profile, sample()[["plan"]])) == {"plan"}
    assert psi_by_feature(profile, sample().iloc[:0]) == {}


def test_json_round_trip() -> None:
    frame = sample(rows=300)
    frame.loc[:10, "amount"] = None
    profile = profile_frame(frame, numeric=["amount"], categorical=["plan"])
    again = DataProfile.from_json(profile.to_json())
    assert again == profile
    assert psi_by_feature(again, frame) == psi_by_feature(profile, frame)


def test_one_spelling_per_category() -> None:
    values = pd.Series([1, 1.0, "1", True, None, 2.5], dtype=object)
    assert as_categories(values).tolist()[:4] == ["1", "1", "1", "True"]
    assert pd.isna(as_categories(values).iloc[4])
    assert as_categories(values).iloc[5] == "2.5"


@pytest.mark.parametrize("size", [1, 2, 3, 10, 101, 4_999])
def test_sorted_quantiles_are_numpys_to_the_bit(size: int) -> None:
    values = np.sort(np.random.default_rng(size).normal(size=size).round(3))
    wanted = np.array([0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 0.95, 1.0])
    np.testing.assert_array_equal(sorted_quantiles(values, wanted), np.quantile(values, wanted))


@pytest.mark.parametrize("dtype", ["str", "category", "float64"])
def test_a_typed_categorical_column_profiles_as_its_python_objects_do(dtype: str) -> None:
    # Typed columns are counted per distinct value; the figures are those of the same values as
    # Python objects (ties in order of first appearance, 1 and 1.0 one category).
    rng = np.random.default_rng(3)
    values = [float(v) for v in rng.integers(0, 30, 3000)] + [None] * 7
    if dtype != "float64":
        values = [None if v is None else f"c{int(v):02d}" for v in values]
    typed = pd.Series(values, dtype=dtype)
    typed_profile = profile_frame(pd.DataFrame({"c": typed}), numeric=[], categorical=["c"])
    object_profile = profile_frame(pd.DataFrame({"c": typed.astype(object)}), numeric=[], categorical=["c"])
    typed_c, object_c = typed_profile.features["c"], object_profile.features["c"]
    assert typed_c == object_c
    assert list(typed_c.categories.items()) == list(object_c.categories.items())  # the same order
    assert typed_c.missing == 7 and typed_c.distinct == 30 and len(typed_c.categories) == 21
