"""The train/test split: seeded, stratified for classification, and stable across versions.

Each row's place is decided by a seeded hash of its content rather than its position: the same
rows land on the same side whatever their order, and rows carried over into the next dataset
version mostly stay where they were, so a champion trained on the previous version is rarely
scored on rows it was trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.ingest.row_hashes import row_hashes, seeded
from shared.pipeline_spec import PipelineSpec


def split_dataset(
    frame: pd.DataFrame, *, spec: PipelineSpec, hashes: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the labelled rows into (train, test) at ``spec.validation.test_fraction``.

    ``hashes`` are the frame's ``row_hashes``, when the caller has them already.
    """
    if hashes is None:
        hashes = row_hashes(frame)
    labels = frame[spec.target].notna()
    if labels.all():  # the usual case: the frame itself, not a copy of it
        labelled = frame.reset_index(drop=True)
    else:
        labelled, hashes = frame[labels].reset_index(drop=True), hashes[labels.to_numpy()]
    if len(labelled) < 2:
        raise ValueError(f"{len(labelled)} labelled rows cannot be split into train and test")
    rank = _row_rank(hashes, seed=spec.seed)
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


def _row_rank(hashes: np.ndarray, *, seed: int) -> pd.Series:
    """A seeded pseudo-random order of rows, a function of each row's content only."""
    keys = seeded(hashes, seed)
    # Identical rows share a key; their order among themselves is by position.
    order = np.lexsort((np.arange(len(keys)), keys))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return pd.Series(rank)
