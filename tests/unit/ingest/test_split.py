"""The train/test split: deterministic, stratified, stable across dataset versions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.ingest.ingestion import row_group_rows
from services.ingest.row_hashes import row_hashes
from services.ingest.split import split_dataset, split_rows
from shared.pipeline_spec import PipelineSpec


def make_spec(**fields: Any) -> PipelineSpec:
    base = {"name": "churn", "target": "y", "task": "classification"}
    return PipelineSpec.from_mapping(base | fields)


def frame(rows: int = 100, *, minority: int = 20, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    return pd.DataFrame(
        {
            "id": range(start, start + rows),
            "x": rng.normal(size=rows),
            "y": ["a"] * (rows - minority) + ["b"] * minority,
        }
    )


def test_positions_are_in_frame_order_and_cover_the_labelled_rows() -> None:
    data = frame(100, minority=20)
    data.loc[[5, 50], "y"] = None
    train, test = split_rows(data, spec=make_spec())
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
    assert sorted([*train, *test]) == [i for i in range(100) if i not in (5, 50)]


def test_same_input_and_seed_give_the_same_split() -> None:
    spec = make_spec()
    first, second = split_dataset(frame(), spec=spec), split_dataset(frame(), spec=spec)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


def test_row_order_does_not_matter() -> None:
    spec = make_spec()
    shuffled = frame().sample(frac=1, random_state=3)[["y", "x", "id"]]
    _, test = split_dataset(frame(), spec=spec)
    _, test_of_shuffled = split_dataset(shuffled, spec=spec)
    assert set(test["id"]) == set(test_of_shuffled["id"])


def test_another_seed_gives_another_split() -> None:
    _, a = split_dataset(frame(), spec=make_spec(seed=1))
    _, b = split_dataset(frame(), spec=make_spec(seed=2))
    assert set(a["id"]) != set(b["id"])


def test_stratification_keeps_class_ratios() -> None:
    train, test = split_dataset(frame(100, minority=20), spec=make_spec())
    assert len(test) == 20 and len(train) == 80
    assert test["y"].value_counts().to_dict() == {"a": 16, "b": 4}
    assert train["y"].value_counts().to_dict() == {"a": 64, "b": 16}
    assert set(train["id"]).isdisjoint(test["id"])


def test_test_fraction_and_rare_classes() -> None:
    train, test = split_dataset(frame(100, minority=2), spec=make_spec(validation={"test_fraction": 0.3}))
    # A class of two rows is still seen on both sides.
    assert test["y"].value_counts().to_dict() == {"a": 29, "b": 1}
    assert (train["y"] == "b").sum() == 1


def test_rows_without_target_are_left_out() -> None:
    data = frame(50, minority=10)
    data.loc[[0, 1, 2], "y"] = None
    train, test = split_dataset(data, spec=make_spec())
    assert len(train) + len(test) == 47
    assert train["y"].notna().all() and test["y"].notna().all()


def test_regression_split() -> None:
    data = frame(50).assign(y=lambda f: f["x"] * 2.0)
    train, test = split_dataset(data, spec=make_spec(task="regression"))
    assert (len(train), len(test)) == (40, 10)


def test_rows_carried_into_the_next_version_mostly_keep_their_side() -> None:
    spec = make_spec()
    version_1 = frame(200, minority=40)
    version_2 = pd.concat([version_1, frame(50, minority=10, start=1000)], ignore_index=True)
    _, test_1 = split_dataset(version_1, spec=spec)
    train_2, _ = split_dataset(version_2, spec=spec)
    leaked = set(test_1["id"]) & set(train_2["id"])
    assert len(leaked) <= 0.1 * len(test_1)


def test_too_few_rows() -> None:
    with pytest.raises(ValueError, match="cannot be split"):
        split_dataset(frame(1, minority=0), spec=make_spec())


def test_another_seed_gives_another_split_of_numbers_only() -> None:
    # Numbers hash without a key: the seed must be mixed into the row hashes, not passed as one.
    data = pd.DataFrame({"x": np.arange(200.0), "y": [0, 1] * 100})
    _, a = split_dataset(data, spec=make_spec(seed=1))
    _, b = split_dataset(data, spec=make_spec(seed=2))
    assert len(a) == len(b) == 40
    assert set(a["x"]) != set(b["x"])


def test_given_row_hashes_split_as_computed_ones() -> None:
    data = frame(300, minority=60)
    spec = make_spec()
    computed = split_dataset(data, spec=spec)
    given = split_dataset(data, spec=spec, hashes=row_hashes(data))
    for mine, theirs in zip(computed, given, strict=True):
        pd.testing.assert_frame_equal(mine, theirs)


def test_identical_rows_still_give_each_class_its_share() -> None:
    # Identical rows share a key: the split takes the first of them by position, as many as wanted.
    data = pd.DataFrame({"x": [1.0] * 20, "y": ["a"] * 10 + ["b"] * 10})
    train, test = split_dataset(data, spec=make_spec(validation={"test_fraction": 0.3}))
    assert test["y"].value_counts().to_dict() == {"a": 3, "b": 3}
    assert len(train) == 14


def test_labels_that_read_the_same_are_one_class() -> None:
    data = pd.DataFrame({"x": np.arange(10.0), "y": pd.Series([1, "1"] * 4 + ["2", 2], dtype=object)})
    _, test = split_dataset(data, spec=make_spec(validation={"test_fraction": 0.25}))
    # Two classes as text ("1": 8 rows, "2": 2 rows): two test rows, then one.
    assert sorted(test["y"].astype(str)) == ["1", "1", "2"]


@pytest.mark.parametrize(
    ("split", "group"),
    [(0, 16_384), (80_000, 16_384), (200_000, 25_000), (400_000, 50_000), (1_600_000, 65_536)],
)
def test_a_split_is_stored_in_row_groups_of_an_eighth_of_it_within_bounds(split: int, group: int) -> None:
    # The slice copied out of the frame for each group stays small beside a small file's data,
    # and a large file keeps the groups that encode fastest.
    assert row_group_rows(split) == group
