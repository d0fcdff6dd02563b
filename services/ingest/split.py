"""The train/test split: seeded, stratified for classification, and stable across versions.

Each row's place is decided by a seeded hash of its content rather than its position: the same
rows land on the same side whatever their order, and rows carried over into the next dataset
version mostly stay where they were, so a champion trained on the previous version is rarely
scored on rows it was trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.pipeline_spec import PipelineSpec


def split_dataset(frame: pd.DataFrame, *, spec: PipelineSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the labelled rows into (train, test) at ``spec.validation.test_fraction``."""
    labels = frame[spec.target].notna()
    # Every row labelled (the usual case): the frame itself, not a copy of it.
    labelled = frame.reset_index(drop=True) if labels.all() else frame[labels].reset_index(drop=True)
    if len(labelled) < 2:
        raise ValueError(f"{len(labelled)} labelled rows cannot be split into train and test")
    rank = _row_rank(labelled, seed=spec.seed)
    fraction = spec.validation.test_fraction
    if spec.task == "classification":
        strata = labelled[spec.target].astype(str)
    else:
        strata = pd.Series("all", index=labelled.index)
    in_test = pd.Series(False, index=labelled.index)
    for _, rows in rank.groupby(strata):
        size = len(rows)
        # Every class with two rows or more is seen on both sides.
        wanted = round(size * fraction)
        if size >= 2:
            wanted = min(max(wanted, 1), size - 1)
        in_test[rows.nsmallest(wanted).index] = True
    if in_test.all() or not in_test.any():
        raise ValueError("the split left one side empty; more rows are needed")
    train = labelled[~in_test].reset_index(drop=True)
    test = labelled[in_test].reset_index(drop=True)
    return train, test


def _row_rank(frame: pd.DataFrame, *, seed: int) -> pd.Series:
    """A seeded pseudo-random order of rows, a function of each row's content only."""
    key = f"{seed:016d}"[-16:]
    # Column order is not content: a reordered file splits the same way.
    ordered = frame[sorted(frame.columns, key=str)]
    hashes = pd.util.hash_pandas_object(ordered, index=False, hash_key=key).to_numpy()
    # Identical rows share a hash; their order among themselves is by position.
    order = np.lexsort((np.arange(len(frame)), hashes))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame))
    return pd.Series(rank, index=frame.index)
